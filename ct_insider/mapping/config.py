"""One validated set of mapping rules, read from a JSON file or the defaults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

_LANGUAGE = r"^[a-z]{2,3}_[A-Z]{2}$"


class ConsentFields(BaseModel):
    """commercetools has no native consent: name the customer custom fields that hold it."""

    model_config = ConfigDict(extra="forbid")

    email_optin: str | None = "emailOptIn"
    sms_optin: str | None = "smsOptIn"
    whatsapp_optin: str | None = "whatsappOptIn"
    gdpr_optin: str | None = "gdprOptIn"


class MappingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uuid_source: Literal["id", "key", "customerNumber", "externalId"] = "id"
    consent_fields: ConsentFields = Field(default_factory=ConsentFields)
    gender_field: str | None = "gender"
    default_language: str = Field(default="en_US", pattern=_LANGUAGE)
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
