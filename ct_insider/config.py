"""Settings from the environment (and an optional .env), one class per outside system.

Each command loads only the groups it needs, so `ct-insider emulate insider` runs with no
credentials at all while the worker refuses to start without them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ct_insider.codec_keys import KeyRing, parse_key_ring
from ct_insider.commercetools.scopes import default_scope_names

_COMMON = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")


class CommercetoolsSettings(BaseSettings):
    """The variable names commercetools' own tools (CLI, Connect, SDK examples) use."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="CTP_")

    project_key: str = Field(min_length=1, description="commercetools project key")
    client_id: str = Field(min_length=1, description="API client id")
    client_secret: SecretStr = Field(description="API client secret")
    auth_url: str = Field(
        min_length=1, description="e.g. https://auth.europe-west1.gcp.commercetools.com"
    )
    api_url: str = Field(
        min_length=1, description="e.g. https://api.europe-west1.gcp.commercetools.com"
    )
    scopes: str = Field(
        default="",
        description="space-separated OAuth scopes; empty: exactly the scopes the features "
        "need, for the project (listed below; setup commercetools checks a token against them)",
    )
    max_concurrency: int = Field(
        default=8, ge=1, le=64, description="requests in flight to commercetools per process"
    )

    @property
    def effective_scopes(self) -> str:
        if self.scopes.strip():
            return self.scopes.strip()
        # Exactly what the features need (the one write: custom objects for the delivery
        # ledger, dead letters and catalog fingerprints); `ct-insider setup commercetools`
        # checks a token against the same list.
        names = default_scope_names()
        return " ".join(f"{name}:{self.project_key}" for name in names)


class InsiderSettings(BaseSettings):
    model_config = SettingsConfigDict(**_COMMON, env_prefix="INSIDER_")

    partner_name: str = Field(
        min_length=1, description="Insider partner name (sent lowercased, as Insider requires)"
    )
    api_key: SecretStr = Field(description="UCD API token")
    catalog_api_key: SecretStr = Field(
        description="Catalog API token (separate from the UCD token)"
    )
    unification_url: str = Field(
        default="https://unification.useinsider.com", description="UCD API base URL"
    )
    catalog_url: str = Field(
        default="https://catalog.api.useinsider.com", description="Catalog API base URL"
    )
    catalog_requests_per_minute: int = Field(
        default=60,
        ge=1,
        description="catalog requests this process may send per minute (Insider allows 60 per "
        "account; with several worker processes, divide it among them: a 429 is waited out "
        "as its Retry-After says, but costs the request)",
    )
    upsert_linger_ms: int = Field(
        default=50,
        ge=0,
        le=1000,
        description="how long a worker holds a journey upsert for other shards' users to "
        "join it in one request (Insider allows 25,000 upsert requests a minute per account)",
    )
    settle_grace_seconds: float = Field(
        default=2.0,
        ge=0,
        le=300,
        description="how long after a request that may have been stored its settlement first "
        "reads profiles (an event Insider stored is readable only once processed; how soon is "
        "not documented)",
    )
    settle_matching: Literal["auto", "event_id", "fingerprint"] = Field(
        default="auto",
        description="how settlement recognises its storefront and sign-up events in a profile "
        "read: event_id (their custom param: only where the account's reads return custom "
        "event params), fingerprint (name, product and second, counted), or auto: what "
        "`ct-insider setup insider` found by probing the account (event_id until it has run)",
    )
    request_timeout_seconds: float = Field(
        default=60.0,
        ge=0.1,
        le=600,
        description="how long one Insider request may go unanswered before the client gives "
        "up on it (an upsert with events is then settled like a lost answer: Insider may "
        "have stored it)",
    )
    profile_units_per_minute: float = Field(
        default=900,
        gt=0,
        description="profile-read quota units this process may spend per minute (Insider's "
        "account quota is 1,000; reads happen only to settle a delivery that may have been "
        "stored; with several worker processes, divide the quota among them)",
    )

    @model_validator(mode="after")
    def _partner_name_is_lowercase(self) -> InsiderSettings:
        # Insider rejects a partner name header that is not lowercase.
        self.partner_name = self.partner_name.strip().lower()
        return self


class TemporalSettings(BaseSettings):
    model_config = SettingsConfigDict(**_COMMON, env_prefix="TEMPORAL_")

    address: str = Field(default="localhost:7233", description="Temporal frontend host:port")
    namespace: str = Field(default="default", description="Temporal namespace")
    task_queue: str = Field(
        default="ct-insider", description="task queue of backfills, delta syncs, checks and catalog"
    )
    # Journeys get their own queue so a large backfill never delays realtime delivery.
    journey_task_queue: str = Field(
        default="ct-insider-journeys",
        description="task queue of the journey shards (the bridge signals them there)",
    )
    api_key: SecretStr | None = Field(
        default=None, description="Temporal Cloud API key (implies TLS)"
    )
    tls: bool = Field(
        default=False, description="TLS without client certificates (implied by an API key)"
    )
    tls_client_cert_path: Path | None = Field(
        default=None, description="mTLS client certificate (set together with the key)"
    )
    tls_client_key_path: Path | None = Field(
        default=None, description="mTLS client private key (set together with the certificate)"
    )
    tls_server_root_ca_path: Path | None = Field(
        default=None, description="CA bundle to verify the server (a private CA)"
    )
    metrics_bind_address: str | None = Field(
        default=None,
        description="host:port (e.g. 0.0.0.0:9464) for a Prometheus endpoint of SDK metrics",
    )
    journey_shards: int = Field(
        default=4,
        ge=1,
        le=1024,
        description="journey shards the realtime path spreads identities over until "
        "`ct-insider reshard` changes them (also while events flow); set it to the current "
        "count, which the bridge, the worker and `ct-insider dlq` share",
    )
    tracing: bool = Field(
        default=False,
        description="OpenTelemetry spans for workflows, activities and signals through the "
        "process's global tracer provider (e.g. under opentelemetry-instrument); implied when "
        "OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER sets up tracing",
    )

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TemporalSettings:
        if (self.tls_client_cert_path is None) != (self.tls_client_key_path is None):
            raise ValueError(
                "TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH must be set together"
            )
        return self


class TelemetrySettings(BaseSettings):
    """OpenTelemetry (the standard OTEL_* variables) and the connector's metrics endpoint
    (ct_insider/telemetry.py). Nothing is set up when none is set."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="CT_INSIDER_")

    metrics_bind_address: str | None = Field(
        default=None,
        description="host:port of a Prometheus scrape endpoint of the connector's own metrics "
        "(worker and bridge; Temporal SDK metrics stay on TEMPORAL_METRICS_BIND_ADDRESS)",
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT",
        description="OTLP collector URL: traces (and metrics) are exported there when set",
    )
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        description="OTLP URL for traces only (enables tracing like OTEL_EXPORTER_OTLP_ENDPOINT)",
    )
    otel_exporter_otlp_metrics_endpoint: str | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        description="OTLP URL for metrics only (pushes the connector's metrics there)",
    )
    otel_exporter_otlp_protocol: str | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_PROTOCOL",
        description="http/protobuf (default) or grpc (needs opentelemetry-exporter-otlp-proto-grpc)",
    )
    otel_exporter_otlp_traces_protocol: str | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        description="the protocol for traces, overriding OTEL_EXPORTER_OTLP_PROTOCOL",
    )
    otel_exporter_otlp_metrics_protocol: str | None = Field(
        default=None,
        validation_alias="OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        description="the protocol for metrics, overriding OTEL_EXPORTER_OTLP_PROTOCOL",
    )
    otel_traces_exporter: str | None = Field(
        default=None,
        validation_alias="OTEL_TRACES_EXPORTER",
        description="otlp, console or none (default: otlp when an OTLP endpoint is set)",
    )
    otel_metrics_exporter: str | None = Field(
        default=None,
        validation_alias="OTEL_METRICS_EXPORTER",
        description="otlp or none (default: otlp when an OTLP endpoint is set); Prometheus is "
        "CT_INSIDER_METRICS_BIND_ADDRESS",
    )
    otel_service_name: str | None = Field(
        default=None,
        validation_alias="OTEL_SERVICE_NAME",
        description="overrides the service name (ct-insider-worker, -bridge, -cli)",
    )


class SchedulesSettings(BaseSettings):
    """The periodic jobs `ct-insider schedules apply` keeps as Temporal Schedules."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="CT_INSIDER_SCHEDULES_")

    path: Path | None = Field(
        default=None,
        description="JSON file of the schedules (see ct_insider/schedules.py); unset: the "
        "built-in defaults (daily consistency checks, a nightly catalog reconciliation)",
    )
    prefix: str = Field(
        default="ct-insider-",
        pattern=r"^ct-insider-([a-z0-9-]*-)?$",
        description="schedule ids start with this; `apply` deletes schedules with it that "
        "the configuration no longer names (e.g. ct-insider-staging- to share a namespace)",
    )


class MappingSettings(BaseSettings):
    """The mapping rules (ct_insider/mapping/config.py) the worker, `setup insider` and
    `doctor` use: a JSON file of the operator's own (--mapping wins over the path here)."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="CT_INSIDER_MAPPING_")

    path: Path | None = Field(
        default=None,
        description="JSON file of mapping rules, for a command given no --mapping; unset: the "
        "built-in example rules, which production processes refuse",
    )
    # The example rules carry demo markets and shop.example.com URLs: synced into a live
    # Insider account they would register its locales and send links to nowhere.
    allow_example: bool = Field(
        default=False,
        description="true: sync with the example mapping rules (demo markets, shop.example.com "
        "URLs): the local dev stack and tests only; otherwise the worker, `setup insider` and "
        "`doctor` refuse them",
    )


class ReplenishmentSettings(BaseSettings):
    """Replenishment reminders: a durable timer per customer and SKU, armed by purchases
    (docs/operations.md, "Replenishment reminders")."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="CT_INSIDER_REPLENISHMENT_")

    enabled: bool = Field(
        default=False,
        description="arm a timer for each purchase of a SKU with a period, and send a "
        "`replenishment_due` event to the customer's profile when it fires",
    )
    attribute: str = Field(
        default="replenishment-days",
        min_length=1,
        description="the product attribute holding a SKU's period in days (on the variant, "
        "else on the product)",
    )
    learn: bool = Field(
        default=False,
        description="where a SKU has no period attribute, use the median gap between the "
        "customer's own purchases of it (costs one orders query per customer and batch with "
        "such a purchase)",
    )
    learn_min_purchases: int = Field(
        default=2, ge=2, le=20, description="purchases of a SKU needed to learn its interval"
    )
    max_skus_per_customer: int = Field(
        default=200,
        ge=1,
        le=1_000,
        description="SKUs one customer's workflow keeps timers for; bounds its state",
    )
    send_timeout_seconds: float = Field(
        default=60.0,
        ge=5,
        le=600,
        description="how long one send of due reminders may take before Temporal retries "
        "it (a retry after a worker died waits this long; it reads the profile first)",
    )
    event_name: str = Field(
        default="replenishment_due",
        pattern=r"^[a-z0-9_]{1,64}$",
        description="the custom event created in InOne (lowercase)",
    )
    day_seconds: float = Field(
        default=86_400.0,
        gt=0,
        description="TESTS ONLY: seconds in one period day (e.g. 1 makes a 30-day period "
        "30 seconds); anything but 86400 is refused unless CT_INSIDER_REPLENISHMENT_"
        "SCALED_FOR_TESTS is set",
    )
    scaled_for_tests: bool = Field(
        default=False, description="TESTS ONLY: allow a day_seconds other than 86400"
    )

    @model_validator(mode="after")
    def _scale_only_in_tests(self) -> ReplenishmentSettings:
        if self.day_seconds != 86_400.0 and not self.scaled_for_tests:
            raise ValueError(
                "CT_INSIDER_REPLENISHMENT_DAY_SECONDS is for tests only: set "
                "CT_INSIDER_REPLENISHMENT_SCALED_FOR_TESTS=true to use it"
            )
        return self


class BridgeSettings(BaseSettings):
    model_config = SettingsConfigDict(**_COMMON, env_prefix="BRIDGE_")

    token: SecretStr = Field(
        description="bearer token senders must present (or ?token=), at least 16 characters; "
        "required by `ct-insider bridge`"
    )
    host: str = Field(
        default="127.0.0.1", description="where the bridge listens (0.0.0.0 in a container)"
    )
    port: int = Field(default=8080, ge=1, le=65535, description="the bridge's HTTP port")
    commit_window_ms: int = Field(
        default=150,
        ge=0,
        le=1000,
        description="how long the bridge gathers events for a journey shard before storing "
        "them in Temporal as one signal (0: one signal per request)",
    )

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value


class ShardBacklogSettings(BaseSettings):
    """When a journey shard is behind, read by everything that hands it events: the bridge,
    and workers handing it cart events."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="BRIDGE_")

    shard_backlog_bytes: int = Field(
        default=8_000_000,
        ge=1_000_000,
        le=40_000_000,
        description="a journey shard with more history than this is behind: its events are "
        "answered 503 (cart events wait) until it catches up",
    )


class SqsSettings(BaseSettings):
    """`ct-insider consume sqs`: the queue a commercetools `SQS` subscription delivers to,
    pulled into the bridge's group commit (bridge/sqs.py). Credentials come from the
    standard AWS chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, a web
    identity, a container or instance role): none are settings of ours."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="SQS_")

    queue_url: str = Field(
        min_length=1,
        description="URL of the queue to consume (the subscription's "
        "CT_INSIDER_SUBSCRIPTION_SQS_QUEUE_URL); required by `ct-insider consume sqs`",
    )
    region: str | None = Field(
        default=None, description="AWS region of the queue; unset: the AWS chain's (AWS_REGION)"
    )
    endpoint_url: str | None = Field(
        default=None,
        description="SQS endpoint to call instead of the region's (a VPC endpoint, a test server)",
    )
    wait_seconds: int = Field(
        default=20, ge=1, le=20, description="long polling: how long a receive waits for messages"
    )
    batch_size: int = Field(
        default=10, ge=1, le=10, description="messages received (and deleted) per request"
    )
    retry_min_seconds: float = Field(
        default=1.0,
        gt=0,
        le=900,
        description="a message not taken (Temporal away, a shard behind) is received again after "
        "this, doubled on each receive, at most SQS_RETRY_MAX_SECONDS",
    )
    retry_max_seconds: float = Field(
        default=60.0,
        ge=1,
        le=43_200,
        description="the longest wait before a message not taken is received again",
    )

    @model_validator(mode="after")
    def _retry_bounds(self) -> SqsSettings:
        if self.retry_min_seconds > self.retry_max_seconds:
            raise ValueError("SQS_RETRY_MIN_SECONDS is over SQS_RETRY_MAX_SECONDS")
        return self


class TimerCapSettings(BaseSettings):
    """Caps on open timer workflows per kind (ct_insider/timers/cap.py): at its cap a kind
    starts no new timer workflow, says so in a warning log line and counts each refusal in
    `ct_insider_timer_starts_refused`."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="TIMERS_")

    max_cart: int = Field(
        default=250_000,
        ge=1,
        description="open cart-recovery timer workflows at most (one per cart with items)",
    )
    max_replenishment: int = Field(
        default=1_000_000,
        ge=1,
        description="open replenishment timer workflows at most (one per customer)",
    )
    count_cache_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="how long a count of open timer workflows (a Temporal visibility count) "
        "is reused before it is asked again; starts in between cost no extra call",
    )


class CartSettings(BaseSettings):
    """Cart events and cart recovery from commercetools carts (docs/operations.md, "Carts").
    The bridge and the worker read them both."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="CART_")

    events_enabled: bool = Field(
        default=False,
        description="route commercetools cart changes to a workflow per cart (cart events and "
        "reminders); `ct-insider setup commercetools` then subscribes to cart changes, and "
        "storefront add_to_cart / remove_from_cart events naming a cart_id are left to it",
    )
    reminder_delays: str = Field(
        default="60m",
        description="inactivity before each cart_abandoned reminder, comma-separated, each "
        "after the previous one (e.g. 60m,24h; units s, m, h, d)",
    )
    coalesce_seconds: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="how long a cart's workflow gathers a burst of changes before its one "
        "read of the cart (0: read at once)",
    )
    forget_after_days: float = Field(
        default=90.0,
        gt=0,
        le=365,
        description="a cart with items unchanged this long stops being followed (match the "
        "project's deleteDaysAfterLastModification of carts)",
    )
    url_template: str | None = Field(
        default=None,
        description="cart URL sent with cart_abandoned, {cart_id} replaced (e.g. "
        "https://shop.example.com/cart?id={cart_id}); unset: no URL",
    )

    @field_validator("reminder_delays")
    @classmethod
    def _delays(cls, value: str) -> str:
        from ct_insider.carts.delays import parse_delays

        parse_delays(value)
        return value


SubscriptionDestination = Literal[
    "GoogleCloudPubSub",
    "SQS",
    "SNS",
    "EventBridge",
    "AzureServiceBus",
    "EventGrid",
    "ConfluentCloud",
]

# The variables (after the prefix) each destination type needs.
SUBSCRIPTION_DESTINATION_FIELDS: dict[str, tuple[str, ...]] = {
    "GoogleCloudPubSub": ("gcp_project_id", "gcp_topic"),
    "SQS": ("sqs_queue_url", "aws_region"),
    "SNS": ("sns_topic_arn",),
    "EventBridge": ("aws_region", "aws_account_id"),
    "AzureServiceBus": ("azure_connection_string",),
    "EventGrid": ("eventgrid_uri", "eventgrid_access_key"),
    "ConfluentCloud": (
        "confluent_bootstrap_server",
        "confluent_api_key",
        "confluent_api_secret",
        "confluent_topic",
    ),
}


class SubscriptionSettings(BaseSettings):
    """Where commercetools delivers the notifications `ct-insider setup commercetools`
    subscribes to (the retailer routes them to the bridge, e.g. Pub/Sub push)."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="CT_INSIDER_SUBSCRIPTION_")

    destination: SubscriptionDestination = Field(
        description="where commercetools delivers messages (needs the variables of that type)"
    )
    key: str = Field(
        default="ct-insider",
        pattern=r"^[A-Za-z0-9_-]{2,256}$",
        description="key of the Subscription setup creates or updates",
    )
    format: Literal["Platform", "CloudEvents"] = Field(
        default="Platform", description="message format commercetools delivers"
    )
    gcp_project_id: str | None = Field(default=None, description="GoogleCloudPubSub: project id")
    gcp_topic: str | None = Field(default=None, description="GoogleCloudPubSub: topic")
    sqs_queue_url: str | None = Field(default=None, description="SQS: queue URL")
    sns_topic_arn: str | None = Field(default=None, description="SNS: topic ARN")
    aws_region: str | None = Field(default=None, description="SQS, EventBridge: AWS region")
    aws_account_id: str | None = Field(default=None, description="EventBridge: AWS account id")
    aws_auth_mode: Literal["IAM", "Credentials"] = Field(
        default="IAM", description="SQS/SNS: IAM (commercetools' role) or access keys"
    )
    aws_access_key: SecretStr | None = Field(
        default=None, description="SQS/SNS with Credentials: access key"
    )
    aws_access_secret: SecretStr | None = Field(
        default=None, description="SQS/SNS with Credentials: access secret"
    )
    azure_connection_string: SecretStr | None = Field(
        default=None, description="AzureServiceBus: connection string"
    )
    eventgrid_uri: str | None = Field(default=None, description="EventGrid: topic URI")
    eventgrid_access_key: SecretStr | None = Field(
        default=None, description="EventGrid: access key"
    )
    confluent_bootstrap_server: str | None = Field(
        default=None, description="ConfluentCloud: bootstrap server"
    )
    confluent_api_key: str | None = Field(default=None, description="ConfluentCloud: API key")
    confluent_api_secret: SecretStr | None = Field(
        default=None, description="ConfluentCloud: API secret"
    )
    confluent_topic: str | None = Field(default=None, description="ConfluentCloud: topic")
    confluent_acks: Literal["0", "1", "-1", "all"] = Field(
        default="all", description="ConfluentCloud: producer acks"
    )
    confluent_key: str | None = Field(default=None, description="Kafka message key field")

    @model_validator(mode="after")
    def _destination_is_complete(self) -> SubscriptionSettings:
        prefix = "CT_INSIDER_SUBSCRIPTION_"
        needed = list(SUBSCRIPTION_DESTINATION_FIELDS[self.destination])
        if self.destination in ("SQS", "SNS") and self.aws_auth_mode == "Credentials":
            needed += ["aws_access_key", "aws_access_secret"]
        unset = [f"{prefix}{name.upper()}" for name in needed if getattr(self, name) in (None, "")]
        if unset:
            raise ValueError(f"a {self.destination} destination needs {', '.join(unset)}")
        return self


class PayloadCodecSettings(BaseSettings):
    """The AES-256-GCM keys of the Temporal payload codec (ct_insider/codec.py)."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="TEMPORAL_CODEC_")

    keys: SecretStr | None = Field(
        default=None,
        description="encryption keys of workflow data in Temporal, `id:base64key,id2:base64key` "
        'or JSON {"id": "base64key"}: 32 random bytes each (`ct-insider codec-server '
        "--generate-key`); keep retired keys listed while histories encrypted with them exist",
    )
    key_id: str | None = Field(
        default=None,
        description="the key id that encrypts new data (default: the first key); the others "
        "only decrypt",
    )
    disabled: bool = Field(
        default=False,
        description="true: run without encryption (local development only); without keys "
        "every process refuses to connect to Temporal unless this is set",
    )

    @model_validator(mode="after")
    def _keys_or_explicitly_disabled(self) -> PayloadCodecSettings:
        if self.keys is None:
            if not self.disabled:
                raise ValueError(
                    "TEMPORAL_CODEC_KEYS is required (customer data in Temporal is encrypted); "
                    "set TEMPORAL_CODEC_DISABLED=true only for local development"
                )
            return self
        if self.disabled:
            raise ValueError("set TEMPORAL_CODEC_KEYS or TEMPORAL_CODEC_DISABLED=true, not both")
        try:
            self.key_ring()
        except ValueError as exc:
            raise ValueError(f"TEMPORAL_CODEC_KEYS {exc}") from None
        return self

    def key_ring(self) -> KeyRing | None:
        if self.keys is None:
            return None
        return parse_key_ring(self.keys.get_secret_value(), self.key_id)


# Asymmetric only: a shared-secret (HS*) or `none` token could be forged by anyone who can
# read the JWKS or just leave the signature off.
OIDC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")


class CodecServerSettings(BaseSettings):
    """`ct-insider codec-server`: decrypts payloads for the Temporal UI and CLI."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="CODEC_SERVER_")

    token: SecretStr | None = Field(
        default=None,
        description="bearer token every /encode and /decode request must present (the "
        "`temporal` CLI's --codec-auth; the Temporal UI cannot send it: docs/deploy.md, what "
        "the Temporal UI can decrypt); the stack's codec server refuses to start without it "
        "unless CODEC_SERVER_OIDC_ISSUER is set",
    )
    insecure_no_auth: bool = Field(
        default=False,
        description="true: answer without a token, only on a loopback host (the local dev "
        "stack, whose Temporal UI has no sign-in to forward a token from)",
    )
    host: str = Field(default="127.0.0.1", description="address the codec server listens on")
    port: int = Field(default=8081, ge=1, le=65535, description="port of the codec server")
    cors_origins: str = Field(
        default="http://localhost:8233",
        description="comma-separated origins of the Temporal UI allowed to call the codec "
        "server from the browser",
    )
    oidc_issuer: str | None = Field(
        default=None,
        description="issuer (`iss`) of the Temporal UI's single sign-on, e.g. "
        "https://login.example.com/ (exactly as in its tokens); set: a bearer other than "
        "CODEC_SERVER_TOKEN must be an access token (JWT) of this issuer",
    )
    oidc_audience: str | None = Field(
        default=None,
        description="audience (`aud`) the SSO access tokens must name; required with "
        "CODEC_SERVER_OIDC_ISSUER",
    )
    oidc_jwks_url: str | None = Field(
        default=None,
        description="URL of the issuer's signing keys (JWKS); empty: the `jwks_uri` of the "
        "issuer's /.well-known/openid-configuration",
    )
    oidc_required_claim: str | None = Field(
        default=None,
        description="`name=value` a token must carry, e.g. groups=temporal-operators (the "
        "claim equals the value or, if a list, contains it); empty: any user of the audience",
    )
    oidc_algorithms: str = Field(
        default="RS256,ES256",
        description="comma-separated signature algorithms accepted on SSO tokens "
        f"(of {', '.join(OIDC_ALGORITHMS)})",
    )

    @field_validator("oidc_algorithms")
    @classmethod
    def _asymmetric_algorithms(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in OIDC_ALGORITHMS]
        if not names or unknown:
            raise ValueError(f"use some of {', '.join(OIDC_ALGORITHMS)}, not {unknown or value!r}")
        return ",".join(names)

    @field_validator("oidc_required_claim")
    @classmethod
    def _name_equals_value(cls, value: str | None) -> str | None:
        if value is not None and not all(part.strip() for part in value.partition("=")[::2]):
            raise ValueError("must be name=value, e.g. groups=temporal-operators")
        return value

    @field_validator("token")
    @classmethod
    def _token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @model_validator(mode="after")
    def _authenticated_unless_local(self) -> CodecServerSettings:
        if self.token is None and not self.insecure_no_auth and self.oidc_issuer is None:
            raise ValueError(
                "CODEC_SERVER_TOKEN is required but not set (or CODEC_SERVER_OIDC_ISSUER)"
            )
        if (self.oidc_issuer is None) != (self.oidc_audience is None):
            raise ValueError("CODEC_SERVER_OIDC_ISSUER and CODEC_SERVER_OIDC_AUDIENCE go together")
        if self.oidc_jwks_url is not None and self.oidc_issuer is None:
            raise ValueError("CODEC_SERVER_OIDC_JWKS_URL needs CODEC_SERVER_OIDC_ISSUER")
        if self.insecure_no_auth and self.oidc_issuer is not None:
            raise ValueError("CODEC_SERVER_INSECURE_NO_AUTH contradicts CODEC_SERVER_OIDC_ISSUER")
        if self.insecure_no_auth and self.host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(
                f"CODEC_SERVER_INSECURE_NO_AUTH needs a loopback CODEC_SERVER_HOST, not {self.host}"
            )
        return self

    @property
    def origins(self) -> list[str]:
        return [
            origin.strip().rstrip("/") for origin in self.cors_origins.split(",") if origin.strip()
        ]


class ConfigurationError(SystemExit):
    """Raised (and exits with code 2) when a setting is missing or invalid."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message


S = TypeVar("S", bound=BaseSettings)


def load(settings_class: type[S]) -> S:
    """Load one settings group or stop the command with one message naming the variables."""
    try:
        return settings_class()
    except ValidationError as exc:
        prefix = str(settings_class.model_config.get("env_prefix", ""))
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            variable = f"{prefix}{field}".upper() if field else prefix.rstrip("_")
            reason = "is required but not set" if error["type"] == "missing" else error["msg"]
            if not field:  # a check across variables names them in its own message
                problems.append(reason.removeprefix("Value error, "))
                continue
            problems.append(f"{variable} {reason}")
        message = "configuration error: " + "; ".join(problems)
        print(message, file=sys.stderr)
        raise ConfigurationError(message) from None
