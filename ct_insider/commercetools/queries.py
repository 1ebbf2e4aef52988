"""Lookups several paths need: which products hold a SKU, which orders hold a payment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ct_insider.commercetools.client import CommercetoolsClient


async def products_with_skus(ct: CommercetoolsClient, skus: Sequence[str]) -> list[dict[str, Any]]:
    """The products (current data) that have a variant with one of `skus`."""
    return await ct.find_in(
        "products",
        skus,
        lambda q: f"masterData(current(masterVariant(sku in ({q})) or variants(sku in ({q}))))",
    )


async def orders_holding_payments(
    ct: CommercetoolsClient, payment_ids: Sequence[str], expand: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The orders whose payment info references one of `payment_ids`."""
    return await ct.find_in(
        "orders", payment_ids, lambda q: f"paymentInfo(payments(id in ({q})))", expand=expand
    )
