"""Resolve the timer changes of an order batch: the reads periods need, then lines.py.

Reads, only for purchases not delivered before (a replay reads nothing):
- product-level periods: one product-projections query per 100 products whose purchased
  variant lacks the attribute, cached (a product's period changes rarely);
- learning (when on): per customer with such a purchase, one orders query - their latest
  `HISTORY_ORDERS` orders up to the batch's latest purchase.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from pydantic import ValidationError

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.models import LineItem, Order
from ct_insider.config import ReplenishmentSettings
from ct_insider.mapping.orders import MappedOrder
from ct_insider.replenishment.lines import (
    PeriodLookups,
    customer_key,
    purchase_time,
    skus_without_attribute,
    timer_changes,
)
from ct_insider.replenishment.model import TimerChange
from ct_insider.replenishment.periods import attribute_days
from ct_insider.sync.window import _iso

# Earlier orders of one customer that learning reads (one page, newest first).
HISTORY_ORDERS = 100
# Products whose period (or its absence) is cached, and for how long.
MAX_CACHED_PRODUCTS = 50_000
PRODUCT_TTL_SECONDS = 300.0

# Event key prefixes whose delivery may change a timer.
_TIMER_KEYS = ("purchase:", "cancellation:", "refund:")


@dataclass(frozen=True)
class OrderToPlan:
    order: Order
    mapped: MappedOrder
    delivered: frozenset[str]  # event keys the ledger lists

    def open_keys(self) -> list[str]:
        return [
            k.key
            for k in self.mapped.events
            if k.key not in self.delivered and k.key.startswith(_TIMER_KEYS)
        ]

    def bought_lines(self) -> list[LineItem]:
        """The lines whose purchase is still to be delivered: only they need a period."""
        open_ = set(self.open_keys())
        return [
            line
            for line in self.order.line_items
            if line.variant.sku and f"purchase:{line.id}" in open_
        ]


class ReplenishmentPlanner:
    def __init__(
        self, ct: CommercetoolsClient, settings: ReplenishmentSettings, purchase_rule: str
    ) -> None:
        self._ct = ct
        self._settings = settings
        self._rule = purchase_rule
        self._products: OrderedDict[str, tuple[float | None, float]] = OrderedDict()
        self.history_reads = 0  # orders queries made for learning
        self.product_reads = 0  # product-projections queries

    async def plan(self, orders: Sequence[OrderToPlan]) -> dict[str, dict[str, list[TimerChange]]]:
        """order id -> event key -> the timer changes its delivery implies."""
        open_orders = [o for o in orders if o.open_keys() and customer_key(o.order)]
        if not open_orders:
            return {}
        attribute = self._settings.attribute
        lacking = [
            line.product_id
            for o in open_orders
            for line in o.bought_lines()
            if line.product_id and attribute_days(line.variant.attributes, attribute) is None
        ]
        product_days = await self._product_days(lacking)
        histories: dict[str, dict[str, list[datetime]]] = {}
        if self._settings.learn:
            histories = await self._histories(open_orders, product_days)
        planned: dict[str, dict[str, list[TimerChange]]] = {}
        for item in open_orders:
            key = customer_key(item.order) or ""
            lookups = PeriodLookups(
                attribute=attribute,
                product_days=product_days,
                history=histories.get(key, {}),
                min_purchases=self._settings.learn_min_purchases,
                day_seconds=self._settings.day_seconds,
            )
            changes = timer_changes(item.order, item.mapped, lookups, self._rule)
            opened = {k: v for k, v in changes.items() if k not in item.delivered}
            if opened:
                planned[item.order.id] = opened
        return planned

    async def _product_days(self, product_ids: Sequence[str]) -> dict[str, float]:
        now = time.monotonic()
        wanted = list(dict.fromkeys(product_ids))
        missing = [
            pid
            for pid in wanted
            if pid not in self._products or now - self._products[pid][1] > PRODUCT_TTL_SECONDS
        ]
        if missing:
            found: dict[str, float | None] = {}
            for start in range(0, len(missing), 100):
                self.product_reads += 1
                for raw in await self._ct.find_in(
                    "product-projections", missing[start : start + 100], lambda q: f"id in ({q})"
                ):
                    found[str(raw["id"])] = attribute_days(
                        raw.get("attributes") or [], self._settings.attribute
                    )
            for pid in missing:
                self._products[pid] = (found.get(pid), now)
                self._products.move_to_end(pid)
            while len(self._products) > MAX_CACHED_PRODUCTS:
                self._products.popitem(last=False)
        return {pid: days for pid in wanted if (days := self._products[pid][0]) is not None}

    async def _histories(
        self, orders: Sequence[OrderToPlan], product_days: dict[str, float]
    ) -> dict[str, dict[str, list[datetime]]]:
        """customer key -> sku -> purchase times of it (their earlier orders, and these)."""
        wanted: dict[str, set[str]] = defaultdict(set)
        latest: dict[str, datetime] = {}
        sample: dict[str, Order] = {}
        for item in orders:
            skus = skus_without_attribute(
                item.bought_lines(), self._settings.attribute, product_days
            )
            if not skus:
                continue
            key = customer_key(item.order) or ""
            wanted[key].update(skus)
            bought = purchase_time(item.order, self._rule)
            latest[key] = max(latest.get(key, bought), bought)
            sample[key] = item.order
        histories: dict[str, dict[str, list[datetime]]] = {}
        for key, sought in wanted.items():
            earlier = await self._earlier_orders(sample[key], latest[key])
            by_sku: dict[str, list[datetime]] = {sku: [] for sku in sought}
            for order in [*earlier, *(o.order for o in orders if customer_key(o.order) == key)]:
                bought = purchase_time(order, self._rule)
                for sku in {line.variant.sku or "" for line in order.line_items} & sought:
                    if bought not in by_sku[sku]:
                        by_sku[sku].append(bought)
            histories[key] = by_sku
        return histories

    async def _earlier_orders(self, order: Order, up_to: datetime) -> list[Order]:
        if order.customer_id:
            who = f"customerId = {json.dumps(order.customer_id)}"
        elif order.customer_email:
            who = f"customerEmail = {json.dumps(order.customer_email)}"
        elif order.anonymous_id:
            who = f"anonymousId = {json.dumps(order.anonymous_id)}"
        else:
            return []
        if self._rule == "createdAt":
            who += f' and createdAt <= "{_iso(up_to.astimezone(UTC))}"'
        self.history_reads += 1
        body = await self._ct.get_json(
            "orders",
            httpx.QueryParams(
                [
                    ("where", who),
                    ("sort", "createdAt desc"),
                    ("limit", str(HISTORY_ORDERS)),
                    ("withTotal", "false"),
                ]
            ),
        )
        found = []
        for raw in body.get("results", []):
            try:
                found.append(Order.model_validate(raw))
            except ValidationError:
                continue  # its purchase was refused on its own path; no interval from it
        return found
