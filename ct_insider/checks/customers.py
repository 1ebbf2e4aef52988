"""Compare a customer's expected Insider attributes (the mapping) with its profile read back.

A profile answers attributes flat, custom ones either nested under `custom` (our emulator)
or with Insider's `c_` prefix; GDPR consent reads back as `gdpr`. Insider appends array
attributes unless told otherwise, so an array holding more than expected is not drift.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ct_insider.checks.drift import FieldDrift, RecordDrift
from ct_insider.insider.models import User
from ct_insider.sync.window import parse_timestamp

# Attributes a profile read answers under another name.
READ_ALIASES = {"gdpr_optin": ("gdpr",)}
_ABSENT = object()


def _found_value(profile: dict[str, Any], name: str, custom: bool) -> Any:
    if custom:
        nested = profile.get("custom")
        if isinstance(nested, dict) and name in nested:
            return nested[name]
        for candidate in (f"c_{name}", name):
            if candidate in profile:
                return profile[candidate]
        return _ABSENT
    for candidate in (name, *READ_ALIASES.get(name, ())):
        if candidate in profile:
            return profile[candidate]
    return _ABSENT


def _moment(value: str) -> datetime | None:
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def same_value(expected: Any, found: Any) -> bool:
    if found is _ABSENT or found is None:
        return expected is None
    if isinstance(expected, list):
        if not isinstance(found, list):
            return False
        return all(any(same_value(e, f) for f in found) for e in expected)
    if isinstance(expected, bool) or isinstance(found, bool):
        return expected is found
    if isinstance(expected, int | float) and isinstance(found, int | float):
        return float(expected) == float(found)
    if isinstance(expected, str) and isinstance(found, str) and expected != found:
        moments = _moment(expected), _moment(found)
        return None not in moments and moments[0] == moments[1]
    return bool(expected == found)


def attribute_drift(expected: User, profile: dict[str, Any]) -> list[FieldDrift]:
    """The attributes whose value in the profile differs from the mapping's."""
    wanted = expected.attributes.to_json_dict() if expected.attributes else {}
    custom = wanted.pop("custom", None) or {}
    found_attributes = profile.get("attributes") or {}
    drift: list[FieldDrift] = []
    for name, value in sorted(wanted.items()):
        found = _found_value(found_attributes, name, custom=False)
        if not same_value(value, found):
            drift.append(FieldDrift.of(name, value, None if found is _ABSENT else found))
    for name, value in sorted(custom.items()):
        found = _found_value(found_attributes, name, custom=True)
        if not same_value(value, found):
            drift.append(
                FieldDrift.of(f"custom.{name}", value, None if found is _ABSENT else found)
            )
    return drift


def compare_customer(
    customer_id: str, expected: User, profile: dict[str, Any] | None
) -> RecordDrift | None:
    """The customer's drift: no profile (missing), differing attributes (stale), or None."""
    if profile is None:
        return RecordDrift(kind="missing", record_id=customer_id, detail="no profile in Insider")
    fields = attribute_drift(expected, profile)
    if fields:
        return RecordDrift(kind="stale", record_id=customer_id, fields=fields)
    return None
