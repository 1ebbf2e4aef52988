"""Settings from the environment (and an optional .env), one class per outside system.

Each command loads only the groups it needs, so `ct-insider emulate insider` runs with no
credentials at all while the worker refuses to start without them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
        names = (
            "view_customers",
            "view_orders",
            "view_published_products",
            "view_products",
            "view_categories",
            "view_payments",
            "view_stores",
            "view_types",
            # The only write: the delivery ledger of sent order events (custom objects).
            "manage_key_value_documents",
        )
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
