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

from ct_insider.commercetools.scopes import default_scope_names

_COMMON = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")


class CommercetoolsSettings(BaseSettings):
    """The variable names commercetools' own tools (CLI, Connect, SDK examples) use."""

    model_config = SettingsConfigDict(**_COMMON, env_prefix="CTP_")

    project_key: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    auth_url: str = Field(
        min_length=1, description="e.g. https://auth.europe-west1.gcp.commercetools.com"
    )
    api_url: str = Field(
        min_length=1, description="e.g. https://api.europe-west1.gcp.commercetools.com"
    )
    scopes: str = Field(
        default="",
        description="Space-separated OAuth scopes; empty means read scopes for the project "
        "plus manage_key_value_documents (the delivery ledger's custom objects).",
    )
    max_concurrency: int = Field(default=8, ge=1, le=64)

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

    partner_name: str = Field(min_length=1)
    api_key: SecretStr
    catalog_api_key: SecretStr
    unification_url: str = "https://unification.useinsider.com"
    catalog_url: str = "https://catalog.api.useinsider.com"
    catalog_requests_per_minute: int = Field(default=60, ge=1)
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
        "reads profiles (an event Insider stored is readable only once processed)",
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

    address: str = "localhost:7233"
    namespace: str = "default"
    task_queue: str = "ct-insider"
    # Journeys get their own queue so a large backfill never delays realtime delivery.
    journey_task_queue: str = "ct-insider-journeys"
    api_key: SecretStr | None = Field(default=None, description="Temporal Cloud API key")
    tls: bool = Field(default=False, description="Use TLS (implied by an API key or client cert)")
    tls_client_cert_path: Path | None = None
    tls_client_key_path: Path | None = None
    tls_server_root_ca_path: Path | None = None
    metrics_bind_address: str | None = Field(
        default=None, description="host:port for a Prometheus scrape endpoint of SDK metrics"
    )
    journey_shards: int = Field(
        default=4,
        ge=1,
        le=1024,
        description="journey shards the realtime path spreads identities over (the bridge, "
        "the worker and `ct-insider dlq` must agree; change it only while no events flow)",
    )
    tracing: bool = Field(
        default=False,
        description="OpenTelemetry spans for workflows, activities and signals, exported by the "
        "process's global tracer provider (e.g. run under opentelemetry-instrument)",
    )

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TemporalSettings:
        if (self.tls_client_cert_path is None) != (self.tls_client_key_path is None):
            raise ValueError(
                "TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH must be set together"
            )
        return self


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


class BridgeSettings(BaseSettings):
    model_config = SettingsConfigDict(**_COMMON, env_prefix="BRIDGE_")

    token: SecretStr = Field(description="Bearer token senders must present (or ?token=)")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    commit_window_ms: int = Field(
        default=150,
        ge=0,
        le=1000,
        description="how long the bridge gathers events for a journey shard before storing "
        "them in Temporal as one signal (0: one signal per request)",
    )
    shard_backlog_bytes: int = Field(
        default=8_000_000,
        ge=1_000_000,
        le=40_000_000,
        description="a journey shard with more history than this is behind: its events are "
        "answered 503 until it catches up",
    )

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
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

    destination: SubscriptionDestination
    key: str = Field(default="ct-insider", pattern=r"^[A-Za-z0-9_-]{2,256}$")
    format: Literal["Platform", "CloudEvents"] = "Platform"
    gcp_project_id: str | None = None
    gcp_topic: str | None = None
    sqs_queue_url: str | None = None
    sns_topic_arn: str | None = None
    aws_region: str | None = None
    aws_account_id: str | None = None
    aws_auth_mode: Literal["IAM", "Credentials"] = Field(
        default="IAM", description="SQS/SNS: IAM (commercetools' role) or access keys"
    )
    aws_access_key: SecretStr | None = None
    aws_access_secret: SecretStr | None = None
    azure_connection_string: SecretStr | None = None
    eventgrid_uri: str | None = None
    eventgrid_access_key: SecretStr | None = None
    confluent_bootstrap_server: str | None = None
    confluent_api_key: str | None = None
    confluent_api_secret: SecretStr | None = None
    confluent_topic: str | None = None
    confluent_acks: Literal["0", "1", "-1", "all"] = "all"
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
            problems.append(f"{variable} {reason}")
        message = "configuration error: " + "; ".join(problems)
        print(message, file=sys.stderr)
        raise ConfigurationError(message) from None
