"""In-memory state of the Insider emulator: profiles with identity resolution, events, catalog.

Identity resolution follows Insider's documented behaviour: no match creates a profile,
one match adds to it, several matches merge them by identifier priority. Each identifier
type holds one value per profile (Insider's configurable "value limit", here 1), so two
profiles with different values of one type (e.g. two uuids sharing a phone number) are
not merged - Insider's exact conflict rule is undocumented; keeping both is the reading
that loses nothing. An upsert never changes an existing identifier, and blocked
placeholder values are ignored.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

IDENTIFIER_PRIORITY = ("uuid", "email", "phone_number")
PERSONAL_ATTRIBUTES = ("email", "phone_number", "name", "surname", "birthday", "gender", "city")
BLOCKED_VALUES = frozenset({"undefined", "anonymous", "0", "1", "null", ""})


@dataclass
class Profile:
    insider_id: str
    identifiers: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    merged_from: list[str] = field(default_factory=list)

    def to_json(self, include_events: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "insider_id": self.insider_id,
            "identifiers": dict(self.identifiers),
            "attributes": self.attributes,
            "event_count": len(self.events),
            "merged_from": self.merged_from,
        }
        if include_events:
            body["events"] = self.events
        return body


def _priority(identifier_type: str) -> int:
    if identifier_type in IDENTIFIER_PRIORITY:
        return IDENTIFIER_PRIORITY.index(identifier_type)
    return len(IDENTIFIER_PRIORITY)  # custom identifiers rank last


def identifier_pairs(identifiers: dict[str, Any]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in identifiers.items():
        if key == "custom" and isinstance(value, dict):
            pairs.extend(
                (f"custom.{k}", str(v)) for k, v in value.items() if str(v) not in BLOCKED_VALUES
            )
        elif isinstance(value, str) and value.strip().lower() not in BLOCKED_VALUES:
            pairs.append((key, value))
    return sorted(pairs, key=lambda pair: _priority(pair[0]))


class InsiderState:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.profiles: dict[str, Profile] = {}
        self.index: dict[tuple[str, str], str] = {}
        self.catalog: dict[tuple[str, str], dict[str, Any]] = {}
        self.locales: set[str] = set()
        self._ids = itertools.count(1)

    # -- profiles ----------------------------------------------------------------------

    def find(self, identifiers: dict[str, Any]) -> Profile | None:
        for pair in identifier_pairs(identifiers):
            insider_id = self.index.get(pair)
            if insider_id is not None:
                return self.profiles[insider_id]
        return None

    def resolve(self, identifiers: dict[str, Any]) -> Profile:
        """Find, create or merge the profile these identifiers point at."""
        pairs = identifier_pairs(identifiers)  # in priority order
        incoming = dict(pairs)
        matched: list[Profile] = []
        for identifier_type, value in pairs:
            insider_id = self.index.get((identifier_type, value))
            if insider_id is None or self.profiles[insider_id] in matched:
                continue
            candidate = self.profiles[insider_id]
            # A profile found through a weaker identifier (a shared phone) that holds
            # another value of a stronger one (a different uuid) is someone else.
            stronger = IDENTIFIER_PRIORITY[: _priority(identifier_type)]
            if any(
                kind in incoming
                and candidate.identifiers.get(kind, incoming[kind]) != incoming[kind]
                for kind in stronger
            ):
                continue
            matched.append(candidate)
        if not matched:
            profile = Profile(insider_id=f"iid-{next(self._ids):08d}")
            self.profiles[profile.insider_id] = profile
        else:
            # The first match is the survivor. A profile holding another value of an
            # identifier type the survivor has cannot join it (one value per type): it
            # stays apart rather than losing an identity.
            profile = matched[0]
            for other in matched[1:]:
                if not _conflicting(profile, other):
                    self._merge(profile, other)
        for identifier_type, value in pairs:
            if (
                identifier_type not in profile.identifiers
                and (identifier_type, value) not in self.index
            ):
                profile.identifiers[identifier_type] = value
                self.index[(identifier_type, value)] = profile.insider_id
        return profile

    def _merge(self, survivor: Profile, other: Profile) -> None:
        for identifier_type, value in other.identifiers.items():
            if identifier_type not in survivor.identifiers:
                survivor.identifiers[identifier_type] = value
                self.index[(identifier_type, value)] = survivor.insider_id
            elif self.index.get((identifier_type, value)) == other.insider_id:
                del self.index[(identifier_type, value)]
        for key, value in other.attributes.items():
            survivor.attributes.setdefault(key, value)
        survivor.events = sorted(
            survivor.events + other.events, key=lambda e: str(e.get("timestamp"))
        )
        survivor.merged_from.append(other.insider_id)
        survivor.merged_from.extend(other.merged_from)
        del self.profiles[other.insider_id]

    def apply_upsert(self, user: dict[str, Any], *, skip_hook: bool) -> Profile:
        if user.get("insider_id") and user["insider_id"] in self.profiles:
            profile = self.profiles[user["insider_id"]]
            if user.get("identifiers"):
                for identifier_type, value in identifier_pairs(user["identifiers"]):
                    if (
                        identifier_type not in profile.identifiers
                        and (identifier_type, value) not in self.index
                    ):
                        profile.identifiers[identifier_type] = value
                        self.index[(identifier_type, value)] = profile.insider_id
        else:
            profile = self.resolve(user.get("identifiers") or {})
        overwrite_arrays = user.get("append") is False or (
            user.get("not_append") is True and user.get("append") is not True
        )
        attributes = user.get("attributes") or {}
        _merge_attributes(profile.attributes, attributes, overwrite_arrays)
        now = time.time()
        for event in user.get("events") or []:
            profile.events.append({**event, "_stored_at": now, "_skip_hook": skip_hook})
        profile.updated_at = now
        return profile

    def delete(self, identifiers: dict[str, Any]) -> bool:
        profile = self.find(identifiers)
        if profile is None:
            return False
        for identifier_type, value in profile.identifiers.items():
            self.index.pop((identifier_type, value), None)
        del self.profiles[profile.insider_id]
        return True

    def anonymize(self, identifiers: dict[str, Any]) -> bool:
        """Strip personal data: identifiers and personal attributes go, events stay."""
        profile = self.find(identifiers)
        if profile is None:
            return False
        for identifier_type, value in profile.identifiers.items():
            self.index.pop((identifier_type, value), None)
        profile.identifiers = {}
        for key in PERSONAL_ATTRIBUTES:
            profile.attributes.pop(key, None)
        profile.attributes["anonymized"] = True
        return True

    def holding(self, value: str) -> list[Profile]:
        """Profiles holding `value` anywhere: an identifier, an attribute, an event param
        (test-only inspection: proves an erasure left nothing of a person)."""
        return [
            profile
            for profile in self.profiles.values()
            if _holds(profile.identifiers, value)
            or _holds(profile.attributes, value)
            or any(_holds(event, value) for event in profile.events)
        ]

    def change_identifier(self, old: tuple[str, str], new: tuple[str, str]) -> Profile | None:
        insider_id = self.index.get(old)
        if insider_id is None:
            return None
        profile = self.profiles[insider_id]
        del self.index[old]
        profile.identifiers[new[0]] = new[1]
        self.index[new] = insider_id
        if new[0] in profile.attributes:
            profile.attributes[new[0]] = new[1]
        return profile

    # -- catalog -----------------------------------------------------------------------

    def catalog_put(self, item: dict[str, Any], *, partial: bool) -> bool:
        key = (str(item["item_id"]), str(item["locale"]))
        if partial:
            existing = self.catalog.get(key)
            if existing is None:
                return False
            existing.update(item)
            existing["_updated_at"] = time.time()
        else:
            self.catalog[key] = {**item, "_updated_at": time.time()}
        return True


def _holds(data: Any, value: str) -> bool:
    if isinstance(data, dict):
        return any(_holds(item, value) for item in data.values())
    if isinstance(data, list):
        return any(_holds(item, value) for item in data)
    return isinstance(data, str) and data.strip().lower() == value.strip().lower()


def _conflicting(first: Profile, second: Profile) -> bool:
    return any(
        first.identifiers.get(identifier_type, value) != value
        for identifier_type, value in second.identifiers.items()
    )


def _merge_attributes(
    target: dict[str, Any], incoming: dict[str, Any], overwrite_arrays: bool
) -> None:
    for key, value in incoming.items():
        if key == "custom" and isinstance(value, dict):
            custom = target.setdefault("custom", {})
            _merge_attributes(custom, value, overwrite_arrays)
        elif isinstance(value, list) and not overwrite_arrays and isinstance(target.get(key), list):
            target[key] = target[key] + [v for v in value if v not in target[key]]
        else:
            target[key] = value
