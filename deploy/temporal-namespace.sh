#!/bin/sh
# Registers the namespace the connector uses (the plain temporalio/server image creates none)
# once the server answers; describes it and leaves it alone when it exists. Runs in
# temporalio/admin-tools (docker-compose.yml: temporal-namespace).
set -eu

: "${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS is required}"
NAMESPACE="${NAMESPACE:-default}"
RETENTION="${RETENTION:-7d}"

attempt=1
until temporal operator cluster health --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; do
  if [ "$attempt" -ge 60 ]; then
    echo "Temporal at $TEMPORAL_ADDRESS is not healthy after $attempt attempts" >&2
    exit 1
  fi
  attempt=$((attempt + 1))
  sleep 2
done

if temporal operator namespace describe --address "$TEMPORAL_ADDRESS" -n "$NAMESPACE" >/dev/null 2>&1; then
  echo "namespace $NAMESPACE exists"
else
  temporal operator namespace create --address "$TEMPORAL_ADDRESS" -n "$NAMESPACE" \
    --retention "$RETENTION"
  echo "namespace $NAMESPACE created (retention $RETENTION)"
fi
