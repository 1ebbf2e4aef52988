"""The replenishment planner's reads: product-level periods (cached), the customer's earlier
orders only when learning is on, and nothing for purchases delivered before."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import httpx

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.models import Order
from ct_insider.config import ReplenishmentSettings
from ct_insider.mapping.config import MappingConfig
from ct_insider.mapping.orders import OrderContext, map_order
from ct_insider.replenishment.model import ArmTimer
from ct_insider.replenishment.planner import OrderToPlan, ReplenishmentPlanner
from tests.unit.test_replenish_periods import order_record, payment


class FakeCommercetools:
    """Answers product-projections by id and orders queries; records what was asked."""

    def __init__(self, products: dict[str, list[dict[str, Any]]], history: list[dict[str, Any]]):
        self.products = products
        self.history = history
        self.product_queries: list[list[str]] = []
        self.order_queries: list[str] = []

    async def find_in(
        self, resource: str, values: Sequence[str], predicate: Callable[[str], str]
    ) -> list[dict[str, Any]]:
        assert resource == "product-projections"
        self.product_queries.append(list(values))
        return [{"id": v, "attributes": self.products[v]} for v in values if v in self.products]

    async def get_json(self, path: str, params: httpx.QueryParams) -> dict[str, Any]:
        assert path == "orders"
        self.order_queries.append(str(params["where"]))
        return {"results": self.history}


async def planned(
    ct: FakeCommercetools, record: dict[str, Any], delivered: frozenset[str] = frozenset(), **s: Any
) -> dict[str, Any]:
    planner = ReplenishmentPlanner(
        cast(CommercetoolsClient, ct), ReplenishmentSettings(**s), "createdAt"
    )
    order = Order.model_validate(record)
    mapped = map_order(order, MappingConfig(), OrderContext())
    return await planner.plan([OrderToPlan(order, mapped, delivered)])


async def test_replenish_planner_reads_product_level_periods_for_variants_without_one() -> None:
    # Given SKU-B's variant has no period but its product has 14 days
    ct = FakeCommercetools({"prod-b": [{"name": "replenishment-days", "value": 14}]}, [])
    # When its purchase is planned (learning off)
    changes = await planned(ct, order_record())
    # Then the product was read (SKU-A's variant has its own period), and no orders
    [arm] = changes["order-1"]["purchase:line-b"]
    assert isinstance(arm, ArmTimer)
    assert (arm.period_days, arm.period_source) == (14.0, "attribute")
    assert ct.product_queries == [["prod-b"]]
    assert ct.order_queries == []


async def test_replenish_planner_learns_from_the_customers_earlier_orders_only_when_on() -> None:
    # Given the customer bought SKU-B 10 days before this order
    earlier = order_record(id="order-0", createdAt="2025-12-22T00:00:00.000Z")
    ct = FakeCommercetools({}, [earlier])
    # When learning is on, then one orders query (theirs, up to this purchase) teaches 10 days
    changes = await planned(ct, order_record(), learn=True)
    [arm] = changes["order-1"]["purchase:line-b"]
    assert isinstance(arm, ArmTimer)
    assert (arm.period_days, arm.period_source) == (10.0, "learned")
    [where] = ct.order_queries
    assert where == 'customerId = "cust-1" and createdAt <= "2026-01-01T00:00:00.000Z"'
    # When it is off, then nothing is learned and no order is read
    ct.order_queries.clear()
    assert "purchase:line-b" not in (await planned(ct, order_record()))["order-1"]
    assert ct.order_queries == []


async def test_replenish_planner_reads_nothing_for_purchases_delivered_before() -> None:
    ct = FakeCommercetools({}, [])
    # Given the order's purchases are all in the ledger (a replay), then no plan, no read
    delivered = frozenset({"purchase:line-a", "purchase:line-b"})
    assert await planned(ct, order_record(), delivered, learn=True) == {}
    assert (ct.product_queries, ct.order_queries) == ([], [])


async def test_replenish_planner_reads_nothing_for_a_refund_and_disarms_every_line() -> None:
    ct = FakeCommercetools({}, [])
    # Given an order whose purchases were delivered, now refunded in full
    record = order_record(paymentInfo={"payments": [payment(2000)]})
    delivered = frozenset({"purchase:line-a", "purchase:line-b"})
    # When planned with learning on
    changes = await planned(ct, record, delivered, learn=True)
    # Then the refund disarms both lines, and nothing was read for it
    disarms = changes["order-1"]["refund:transaction:tx-2000"]
    assert [(d.action, d.line_id) for d in disarms] == [
        ("disarm", "line-a"),
        ("disarm", "line-b"),
    ]
    assert (ct.product_queries, ct.order_queries) == ([], [])
