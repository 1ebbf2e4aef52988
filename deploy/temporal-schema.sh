#!/bin/sh
# Creates (first run) or upgrades (later runs, after a new TEMPORAL_VERSION) Temporal's two
# PostgreSQL databases with temporal-sql-tool, the way Temporal supports self-hosting now that
# the temporalio/auto-setup image is deprecated. Runs in temporalio/admin-tools of the same
# version as the server, before the server starts (docker-compose.yml: temporal-schema).
# Every step is idempotent: `create` ignores an existing database, `setup-schema -v 0.0` skips
# a database that is already versioned, `update-schema` applies only the versions it lacks.
set -eu

: "${POSTGRES_SEEDS:?POSTGRES_SEEDS (the PostgreSQL host) is required}"
: "${POSTGRES_USER:?POSTGRES_USER is required}"
: "${POSTGRES_PWD:?POSTGRES_PWD is required}"
DB_PORT="${DB_PORT:-5432}"
SCHEMA_DIR=/etc/temporal/schema/postgresql/v12

# temporal-sql-tool reads the password from SQL_PASSWORD (kept off the command line).
SQL_PASSWORD="$POSTGRES_PWD"
export SQL_PASSWORD

sql_tool() {
  database="$1"
  shift
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" \
    -u "$POSTGRES_USER" --db "$database" "$@"
}

migrate() {
  name="$1"
  versions="$2"
  echo "schema of $name: create, set up, update from $versions"
  sql_tool "$name" create
  sql_tool "$name" setup-schema -v 0.0
  sql_tool "$name" update-schema -d "$versions"
}

migrate "${DBNAME:-temporal}" "$SCHEMA_DIR/temporal/versioned"
migrate "${VISIBILITY_DBNAME:-temporal_visibility}" "$SCHEMA_DIR/visibility/versioned"
echo "Temporal schemas are up to date"
