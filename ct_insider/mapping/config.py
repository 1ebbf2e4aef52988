"""One validated set of mapping rules, read from a JSON file or the defaults."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

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

    email_optin: str | None = Field(
        default="emailOptIn", description="custom field (boolean) that gives `email_optin`"
    )
    sms_optin: str | None = Field(
        default="smsOptIn", description="custom field (boolean) that gives `sms_optin`"
    )
    whatsapp_optin: str | None = Field(
        default="whatsappOptIn", description="custom field (boolean) that gives `whatsapp_optin`"
    )
    gdpr_optin: str | None = Field(
        default="gdprOptIn", description="custom field (boolean) that gives `gdpr_optin`"
    )


RefundSource = Literal["payments", "returns"]
REFUND_SOURCES: tuple[RefundSource, ...] = ("payments", "returns")


class OrderEventRules(BaseModel):
    """How orders, refunds and cancellations become Insider events."""

    model_config = ConfigDict(extra="forbid")

    purchase_event: str = Field(
        default="purchase", pattern=_EVENT_NAME, description="event per purchased line"
    )
    # Insider documents no system name for refunds and only a display name ("Cancelled
    # Purchase") for cancellations: both are configurable custom events.
    refund_event: str = Field(
        default="purchase_refund",
        pattern=_EVENT_NAME,
        description="event per refund (a custom event: define it in InOne)",
    )
    cancellation_event: str = Field(
        default="cancelled_purchase",
        pattern=_EVENT_NAME,
        description="event per line of a cancelled order (a custom event: define it in InOne)",
    )
    # Where refunds are read from. A retailer who records one refund both as a payment
    # transaction and on the return item keeps one source, or it is counted twice.
    refund_sources: list[RefundSource] = Field(
        default_factory=lambda: list(REFUND_SOURCES),
        description="where refunds are read from: successful Refund transactions of payments, "
        "return items whose paymentState is Refunded (keep one if a refund is recorded in both)",
    )
    include_custom_line_items: bool = Field(
        default=True,
        description="custom line items (gift wrap, fees) become purchases (product_id = slug)",
    )
    # Insider starts live On Event journeys on any event it receives unless the request says
    # skip_hook: an old event reaching it live (a delta resumed from an old watermark, a
    # years-old order changed today, a re-driven letter) would start them with stale news.
    live_window_hours: float = Field(
        default=72.0,
        gt=0,
        description="an order whose newest event is older than this never starts live "
        "journeys: it is sent with skip_hook on every path (backfill, delta, re-drive)",
    )
    # Imported historical orders carry their real date in completedAt.
    purchase_time: Literal["createdAt", "completedAt"] = Field(
        default="createdAt",
        description="the purchase timestamp (completedAt for imported historical orders)",
    )
    # The sales channel: an order custom field, else the store's entry, else the default.
    channel_field: str | None = Field(
        default="channel", description="order custom field that gives the `channel` param"
    )
    store_channels: dict[str, str] = Field(
        default_factory=dict,
        description="channel by store key, for an order without the custom field",
    )
    default_channel: str = Field(
        default="web", description="channel of an order with neither custom field nor store"
    )
    # commercetools anonymousId goes to Insider as this custom identifier (it must be
    # enabled in the account's Identity Resolution settings).
    anonymous_identifier: str = Field(
        default="ct_anonymous_id",
        pattern=_NAME,
        description="Insider custom identifier of the anonymousId (enable it in Identity "
        "Resolution)",
    )
    color_attribute: str | None = Field(
        default="color", description="variant attribute that gives the purchase's `color`"
    )
    size_attribute: str | None = Field(
        default="size", description="variant attribute that gives the purchase's `size`"
    )


class MappingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # How a deployment knows the shipped example (deploy/ct-insider/mapping.example.json)
    # from the operator's rules: the example says so, and the operator removes the line.
    example: bool = Field(
        default=False,
        description="true marks the shipped example rules (demo markets): production processes "
        "refuse them; remove it once the rules are your own",
    )

    uuid_source: Literal["id", "key", "customerNumber", "externalId"] = Field(
        default="id",
        description="the customer field that becomes Insider's uuid (orders look their "
        "customer up when it is not the id)",
    )
    consent_fields: ConsentFields = Field(
        default_factory=ConsentFields, description="customer custom fields holding consent"
    )
    gender_field: str | None = Field(
        default="gender", description="customer custom field that gives the gender"
    )
    default_language: str = Field(
        default="en_US",
        pattern=_LANGUAGE,
        description="language of a customer with neither locale nor store language",
    )
    # Language of a customer without a locale, by the key of their first store.
    store_languages: dict[str, str] = Field(
        default_factory=dict,
        description="language (en_US form) of a customer without a locale, by their first "
        "store's key",
    )
    orders: OrderEventRules = Field(
        default_factory=OrderEventRules, description="orders, refunds and cancellations"
    )
    catalog: CatalogRules = Field(
        default_factory=CatalogRules, description="the catalog per market"
    )
    # What a CustomerDeleted message does to the Insider user.
    customer_deletion: Literal["delete", "anonymize", "keep"] = Field(
        default="delete", description="what a CustomerDeleted message does to the Insider user"
    )
    sign_up_event: str = Field(
        default="sign_up_confirmation",
        pattern=_EVENT_NAME,
        description="event a CustomerCreated message adds",
    )
    # commercetools custom fields copied to Insider custom attributes: {ct field: insider name}.
    custom_field_attributes: dict[str, str] = Field(
        default_factory=dict,
        description="customer custom fields copied to Insider custom attributes "
        "({commercetools field: Insider attribute}; create the attributes in InOne)",
    )

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


# RFC 2606 reserves these second-level domains: no shop can serve its products there.
_EXAMPLE_DOMAIN = re.compile(r"(^|\.)example\.(com|org|net)$")
EXAMPLE_FILE = "deploy/ct-insider/mapping.example.json"


def example_reasons(config: MappingConfig, path: Path | None) -> list[str]:
    """Why these rules are the example rather than an operator's own (empty: they are not)."""
    reasons = []
    if path is None:
        reasons.append("no mapping file was given (--mapping or CT_INSIDER_MAPPING_PATH)")
    if config.example:
        reasons.append('the file says "example": true')
    host = urlsplit(config.catalog.url_template.replace("{", "").replace("}", "")).hostname
    if host and _EXAMPLE_DOMAIN.search(host):
        reasons.append(f"catalog.url_template links to {host}, a reserved example domain")
    return reasons


def operator_mapping(path: Path | None, *, allow_example: bool) -> tuple[MappingConfig, bool]:
    """The rules a production process syncs with, and whether they are the example: the
    example (the built-in defaults, a file marked `"example": true`, catalog links to an
    example domain) is refused unless `allow_example` (CT_INSIDER_MAPPING_ALLOW_EXAMPLE, which
    the dev stack and the tests set), so demo markets never reach a live Insider account."""
    config = load_mapping_config(path)
    reasons = example_reasons(config, path)
    if reasons and not allow_example:
        raise MappingConfigError(
            "refusing the example mapping rules ("
            + "; ".join(reasons)
            + "): they would register demo markets and shop.example.com links in a live "
            f"Insider account. Write your own rules (docs/deploy.md, step 4; {EXAMPLE_FILE} "
            'shows every rule), remove its "example" line and pass the file with --mapping '
            "or CT_INSIDER_MAPPING_PATH; for a demo account set "
            "CT_INSIDER_MAPPING_ALLOW_EXAMPLE=true"
        )
    return config, bool(reasons)


def load_mapping_config(path: Path | None) -> MappingConfig:
    """The defaults, or the rules in a JSON file; a bad rule names itself in the error."""
    if path is None:
        return MappingConfig()
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise MappingConfigError(
            f"no mapping rules at {path}: write your own there ({EXAMPLE_FILE} shows every "
            "rule; docs/deploy.md, step 4)"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise MappingConfigError(f"cannot read mapping rules {path}: {exc}") from exc
    try:
        return MappingConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise MappingConfigError(f"invalid mapping rules in {path}: {problems}") from exc
