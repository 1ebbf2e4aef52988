"""Profile reads for checks, counted: how many, and what they cost of the quota.

The client paces every read to the account's profile quota (ct_insider/insider/quota.py);
a check shares that quota with delivery's doubt settling, so it counts what it spent and
reports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ct_insider.insider.client import InsiderClient
from ct_insider.insider.quota import ASSUMED_COST


class CountedReads:
    def __init__(self, insider: InsiderClient) -> None:
        self._insider = insider
        self.reads = 0
        self.units = 0.0

    async def profile(
        self,
        identifiers: dict[str, Any],
        attributes: Sequence[str] = ("*",),
        events: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        profile = await self._insider.read_profile(identifiers, attributes, events)
        self.reads += 1
        cost = ((profile or {}).get("quota") or {}).get("cost")
        # A read of an unknown user answers 404 without a cost: charged as Insider's example.
        self.units += float(cost) if isinstance(cost, int | float) else ASSUMED_COST
        return profile
