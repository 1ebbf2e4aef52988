"""What the bridge refuses before accepting a journey signal: one that names nobody (no
customer, visitor or email: no journey owns it) or that weighs more than MAX_SIGNAL_BYTES
(the budget that keeps every payload of the shard under Temporal's limit).

A refused signal is never handed to Temporal: a storefront event is answered 422 with the
reason, a commercetools delivery is dead-lettered (bridge/letters.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bridge.commit import ShardPart
from ct_insider.journeys.signals import MAX_SIGNAL_BYTES, JourneySignal, encoded_size

RefusalCause = Literal["names_nobody", "oversized"]


@dataclass(frozen=True)
class SignalRefusal:
    cause: RefusalCause
    reason: str  # a predicate: "<the event> names no customer, visitor or email"


def admit(signal: JourneySignal) -> ShardPart | SignalRefusal:
    if signal.identity.routing_key() is None:
        return SignalRefusal("names_nobody", "names no customer, visitor or email")
    size = encoded_size(signal)
    if size > MAX_SIGNAL_BYTES:
        return SignalRefusal(
            "oversized",
            f"is {size:,} bytes as a journey signal, over the limit of {MAX_SIGNAL_BYTES:,} "
            "bytes per signal (MAX_SIGNAL_BYTES)",
        )
    return ShardPart.of(signal)
