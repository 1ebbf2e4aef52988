"""Test-only: plant drift in the emulator's state (what consistency checks must find).

Not part of Insider's API. Each action names a profile by one identifier
(`{"uuid": "..."}`, `{"email": "..."}`) and changes it behind the connector's back.
"""

from __future__ import annotations

import copy
from typing import Any

from emulators.insider.store import InsiderState

ACTIONS = (
    "delete_profile",
    "set_attribute",
    "delete_event",
    "duplicate_event",
)


class DriftError(ValueError):
    pass


def _matching_event(events: list[dict[str, Any]], match: dict[str, Any]) -> int:
    """Index of the first event whose name and params match `match`."""
    for index, event in enumerate(events):
        params = event.get("event_params") or {}
        if match.get("event_name", event.get("event_name")) != event.get("event_name"):
            continue
        if all(params.get(k) == v for k, v in match.items() if k != "event_name"):
            return index
    raise DriftError(f"no event matches {match}")


def plant(state: InsiderState, body: dict[str, Any]) -> dict[str, Any]:
    """Apply one drift action; returns what changed."""
    action = body.get("action")
    if action not in ACTIONS:
        raise DriftError(f"action must be one of {ACTIONS}")
    identifiers = body.get("identifiers")
    profile = state.find(identifiers) if isinstance(identifiers, dict) else None
    if profile is None:
        raise DriftError("no profile for these identifiers")
    if action == "delete_profile":
        state.delete(profile.identifiers)
        return {"deleted": profile.insider_id}
    if action == "set_attribute":
        name, value = str(body.get("name")), body.get("value")
        if name.startswith("custom."):
            profile.attributes.setdefault("custom", {})[name[len("custom.") :]] = value
        else:
            profile.attributes[name] = value
        return {"insider_id": profile.insider_id}
    index = _matching_event(profile.events, body.get("match") or {})
    if action == "delete_event":
        removed = profile.events.pop(index)
        return {"removed": removed}
    profile.events.insert(index + 1, copy.deepcopy(profile.events[index]))
    return {"events": len(profile.events)}
