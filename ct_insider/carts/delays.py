"""Reminder delays as an operator writes them: `60m`, or `60m,24h` (each after the one
before it, counted from the cart's last change)."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
# More reminders than this per inactivity period is a misconfiguration, not a journey.
MAX_REMINDERS = 5


def parse_delays(text: str) -> list[float]:
    """Seconds of inactivity before each reminder, counted from the last cart change
    (cumulative: `60m,24h` reminds after 1 hour and after 25 hours). Raises ValueError."""
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        raise ValueError("give at least one delay, e.g. 60m")
    if len(parts) > MAX_REMINDERS:
        raise ValueError(f"at most {MAX_REMINDERS} reminders, not {len(parts)}")
    delays: list[float] = []
    total = 0.0
    for part in parts:
        match = _DELAY.match(part)
        if match is None:
            raise ValueError(f"{part.strip()!r} is not a delay like 90s, 60m, 24h or 2d")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
        if seconds <= 0:
            raise ValueError(f"{part.strip()!r}: a delay must be positive")
        total += seconds
        delays.append(total)
    return delays
