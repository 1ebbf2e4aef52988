"""Compare one person's expected order events (the mapping) with the events their profile holds.

Order events carry no id Insider keeps, so they are recognised the way delivery settles a
doubt (ct_insider/insider/held.py): by event name, `event_group_id` (the order) and
`product_id`, counting. Fewer stored than expected: the rest are missing; more: duplicated
(Insider cannot delete events: those need manual action). A stored event of a checked
order that the order does not produce (a line since removed) is extra. Events of orders
not in the sample are not looked at.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ct_insider.checks.drift import DUPLICATES_NEED_MANUAL_ACTION, RecordDrift
from ct_insider.insider.held import CountKey
from ct_insider.mapping.orders import KeyedEvent


@dataclass(frozen=True)
class ExpectedOrder:
    order_id: str
    group_id: str  # event_group_id of the order's events
    events: Sequence[KeyedEvent]


@dataclass
class OrderComparison:
    drift: list[RecordDrift] = field(default_factory=list)
    # order id -> event keys Insider holds / lacks (what a repair puts right in the ledger)
    held: dict[str, set[str]] = field(default_factory=dict)
    missing: dict[str, set[str]] = field(default_factory=dict)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def count_key(keyed: KeyedEvent) -> CountKey:
    params = keyed.event.event_params
    return (
        keyed.event.event_name,
        _text(params.get("event_group_id")),
        _text(params.get("product_id")),
    )


def stored_counts(
    events: dict[str, list[dict[str, Any]]], group_ids: set[str]
) -> Counter[CountKey]:
    """The profile's events (a profile read's `events`) of these orders, counted by key."""
    counts: Counter[CountKey] = Counter()
    for name, found in events.items():
        for event in found:
            group = _text(event.get("event_group_id"))
            if group in group_ids:
                counts[(name, group, _text(event.get("product_id")))] += 1
    return counts


def compare_orders(
    orders: Sequence[ExpectedOrder], found_events: dict[str, list[dict[str, Any]]]
) -> OrderComparison:
    result = OrderComparison()
    by_group = {order.group_id: order for order in orders}
    stored = stored_counts(found_events, set(by_group))
    expected: dict[CountKey, list[tuple[str, str]]] = defaultdict(list)  # -> (order id, key)
    for order in orders:
        result.held[order.order_id] = set()
        result.missing[order.order_id] = set()
        for keyed in order.events:
            expected[count_key(keyed)].append((order.order_id, keyed.key))
    for key, owners in sorted(expected.items(), key=lambda kv: str(kv[0])):
        owners.sort()
        present = stored.get(key, 0)
        for position, (order_id, event_key) in enumerate(owners):
            if position < present:
                result.held[order_id].add(event_key)
            else:
                result.missing[order_id].add(event_key)
                result.drift.append(
                    RecordDrift(
                        kind="missing",
                        record_id=order_id,
                        item=event_key,
                        detail=f"{key[0]} of {key[2] or '-'} not in the profile",
                    )
                )
        if present > len(owners):
            order_id, event_key = owners[0]
            result.drift.append(
                RecordDrift(
                    kind="duplicated",
                    record_id=order_id,
                    item=event_key,
                    count=present - len(owners),
                    detail=f"{present} stored, {len(owners)} expected: "
                    + DUPLICATES_NEED_MANUAL_ACTION,
                )
            )
    for key, present in sorted(stored.items(), key=lambda kv: str(kv[0])):
        if key not in expected:
            order = by_group[str(key[1])]
            result.drift.append(
                RecordDrift(
                    kind="extra",
                    record_id=order.order_id,
                    item=f"{key[0]}:{key[2] or '-'}",
                    count=present,
                    detail="stored in Insider, not produced by the order now",
                )
            )
    return result
