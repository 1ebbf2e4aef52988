"""One validated set of mapping rules, read from a JSON file or the defaults."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ct_insider.mapping.catalog import CatalogRules

_LANGUAGE = r"^[a-z]{2,3}_[A-Z]{2}$"
# Insider rejects event names outside ^[a-z0-9][a-zA-Z0-9._-]*$ and was seen refusing
# camelCase (`homepageView`), so we accept lowercase snake_case only: the safer reading.
_EVENT_NAME = r"^[a-z0-9][a-z0-9_]*$"
_NAME = r"^[A-Za-z0-9_]+$"


class ConsentFields(BaseModel):
    """commercetools has no native consent: name the customer custom fields that hold it."""

    model_config = ConfigDict(extra="forbid")

    email_optin: str | None = "emailOptIn"
    sms_optin: str | None = "smsOptIn"
    whatsapp_optin: str | None = "whatsappOptIn"
    gdpr_optin: str | None = "gdprOptIn"


RefundSource = Literal["payments", "returns"]
REFUND_SOURCES: tuple[RefundSource, ...] = ("payments", "returns")


class OrderEventRules(BaseModel):
    """How orders, refunds and cancellations become Insider events."""

    model_config = ConfigDict(extra="forbid")

    purchase_event: str = Field(default="purchase", pattern=_EVENT_NAME)
    # Insider documents no system name for refunds and only a display name ("Cancelled
    # Purchase") for cancellations: both are configurable custom events.
    refund_event: str = Field(default="purchase_refund", pattern=_EVENT_NAME)
    cancellation_event: str = Field(default="cancelled_purchase", pattern=_EVENT_NAME)
    # Where refunds are read from. A retailer who records one refund both as a payment
    # transaction and on the return item keeps one source, or it is counted twice.
    refund_sources: list[RefundSource] = Field(default_factory=lambda: list(REFUND_SOURCES))
    include_custom_line_items: bool = True
    # Imported historical orders carry their real date in completedAt.
    purchase_time: Literal["createdAt", "completedAt"] = "createdAt"
    # The sales channel: an order custom field, else the store's entry, else the default.
    channel_field: str | None = "channel"
    store_channels: dict[str, str] = Field(default_factory=dict)
    default_channel: str = "web"
    # commercetools anonymousId goes to Insider as this custom identifier (it must be
    # enabled in the account's Identity Resolution settings).
    anonymous_identifier: str = Field(default="ct_anonymous_id", pattern=_NAME)
    color_attribute: str | None = "color"
    size_attribute: str | None = "size"


class MappingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uuid_source: Literal["id", "key", "customerNumber", "externalId"] = "id"
    consent_fields: ConsentFields = Field(default_factory=ConsentFields)
    gender_field: str | None = "gender"
    default_language: str = Field(default="en_US", pattern=_LANGUAGE)
    # Language of a customer without a locale, by the key of their first store.
    store_languages: dict[str, str] = Field(default_factory=dict)
    orders: OrderEventRules = Field(default_factory=OrderEventRules)
    catalog: CatalogRules = Field(default_factory=CatalogRules)
    # What a CustomerDeleted message does to the Insider user.
    customer_deletion: Literal["delete", "anonymize", "keep"] = "delete"
    sign_up_event: str = Field(default="sign_up_confirmation", pattern=_EVENT_NAME)
    # commercetools custom fields copied to Insider custom attributes: {ct field: insider name}.
    custom_field_attributes: dict[str, str] = Field(default_factory=dict)

    @field_validator("custom_field_attributes")
    @classmethod
    def _insider_names_are_valid(cls, value: dict[str, str]) -> dict[str, str]:
        for source, target in value.items():
            if not target or not target.replace("_", "").isalnum():
                raise ValueError(
                    f"custom field {source!r} maps to {target!r}: Insider attribute names are "
                    "letters, digits and underscores"
                )
        return value

    @field_validator("store_languages")
    @classmethod
    def _languages_are_insider_form(cls, value: dict[str, str]) -> dict[str, str]:
        for store, language in value.items():
            if not re.match(_LANGUAGE, language):
                raise ValueError(f"store {store!r}: language {language!r} is not like en_US")
        return value


class MappingConfigError(ValueError):
    pass


def load_mapping_config(path: Path | None) -> MappingConfig:
    """The defaults, or the rules in a JSON file; a bad rule names itself in the error."""
    if path is None:
        return MappingConfig()
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MappingConfigError(f"cannot read mapping rules {path}: {exc}") from exc
    try:
        return MappingConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise MappingConfigError(f"invalid mapping rules in {path}: {problems}") from exc
