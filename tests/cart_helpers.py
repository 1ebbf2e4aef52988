"""Carts as commercetools returns them, for cart event and recovery tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client

from ct_insider.timers.cost import HistoryCost, history_cost


def money(cents: int, currency: str = "EUR") -> dict[str, Any]:
    return {
        "type": "centPrecision",
        "currencyCode": currency,
        "centAmount": cents,
        "fractionDigits": 2,
    }


def raw_cart(
    cart_id: str, version: int, lines: dict[str, int], *, state: str = "Active", **owner: str
) -> dict[str, Any]:
    """A cart with `lines` (SKU -> quantity, 10.00 EUR each); `owner`: anonymousId,
    customerId, customerEmail (default: an anonymous id)."""
    items = [
        {
            "id": f"li-{sku}",
            "productId": f"prod-{sku}",
            "name": {"en": f"Product {sku}"},
            "productSlug": {"en": sku.lower()},
            "variant": {"id": 1, "sku": sku, "images": [{"url": f"https://img/{sku}.jpg"}]},
            "price": {"value": money(1000)},
            "quantity": quantity,
            "totalPrice": money(1000 * quantity),
        }
        for sku, quantity in lines.items()
    ]
    return {
        "id": cart_id,
        "version": version,
        "cartState": state,
        "lastModifiedAt": datetime.now(UTC).isoformat(),
        "country": "DE",
        "locale": "en",
        "totalPrice": money(1000 * sum(lines.values())),
        "lineItems": items,
        **(owner if owner else {"anonymousId": f"visitor-{cart_id}"}),
    }


async def run_costs(client: Client, workflow_id: str) -> HistoryCost:
    """The cost of every run of a workflow id (continue-as-new and later starts)."""
    total = HistoryCost()
    async for execution in client.list_workflows(f"WorkflowId = '{workflow_id}'"):
        handle = client.get_workflow_handle(workflow_id, run_id=execution.run_id)
        total = total.add(history_cost([e async for e in handle.fetch_history_events()]))
    return total
