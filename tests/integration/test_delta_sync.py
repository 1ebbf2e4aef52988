"""DeltaSyncWorkflow: changes reach Insider window by window; nothing unchanged is re-sent."""

from __future__ import annotations

from collections import Counter

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client

from ct_insider.sync.window import parse_timestamp
from tests.conftest import Emulators, running_delta, status_when
from workers.main import Workers
from workflows.delta import DeltaSyncWorkflow

pytestmark = pytest.mark.integration


async def test_an_edited_customer_reaches_insider_and_unchanged_ones_are_not_resent(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    # Given 30 customers and a running customer delta sync that has sent them
    customers = emu.seeder().customers(30)
    async with running_delta(client, worker.task_queue, "customers") as handle:
        synced = await status_when(handle, lambda s: s.totals.sent == 30)
        # ... and has since run windows that overlap the ones that sent them
        await status_when(handle, lambda s: s.windows >= synced.windows + 8)

        # When one customer is edited in commercetools
        customer_id, _ = customers[7]
        current = emu.ct("GET", f"customers/{customer_id}")
        edited = emu.ct(
            "POST",
            f"customers/{customer_id}",
            {
                "version": current["version"],
                "actions": [{"action": "setFirstName", "firstName": "Renamed"}],
            },
        )

        # Then it reaches Insider, and it is the only customer sent again
        status = await status_when(handle, lambda s: s.totals.sent == 31)
        [profile] = [u for u in emu.insider_users() if u["identifiers"]["uuid"] == customer_id]
        assert profile["attributes"]["name"] == "Renamed"
        assert status.totals.skipped > 0  # the overlap re-read records and skipped them
        await status_when(handle, lambda s: s.windows >= status.windows + 8)
        final = await handle.query(DeltaSyncWorkflow.status)
        assert final is not None
        assert final.totals.sent == 31
        # ... and the windows run since moved the watermark on, past the edit
        assert final.watermark is not None
        assert status.watermark is not None
        assert final.watermark > status.watermark > parse_timestamp(edited["lastModifiedAt"])
        # The Temporal UI shows the same as "Current details".
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        assert "watermark: " in metadata.current_details
        assert "windows synced: " in metadata.current_details


async def test_orders_delta_sends_purchases_and_later_refunds_once_despite_overlap(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    customer_id, email, sku = emu.shopper()
    async with running_delta(client, worker.task_queue, "orders") as handle:
        # Given an order placed while the delta sync runs
        order = emu.place_order(
            sku, currency="EUR", country="DE", customerId=customer_id, customerEmail=email
        )
        payment = emu.ct(
            "POST",
            "payments",
            {
                "amountPlanned": order["totalPrice"],
                "transactions": [
                    {"type": "Charge", "amount": order["totalPrice"], "state": "Success"}
                ],
            },
        )
        emu.ct(
            "POST",
            f"orders/{order['id']}",
            {
                "version": order["version"],
                "actions": [
                    {"action": "addPayment", "payment": {"typeId": "payment", "id": payment["id"]}}
                ],
            },
        )
        await status_when(handle, lambda s: s.totals.events == 1)

        # When a refund is added to the payment (the order itself does not change)
        emu.ct(
            "POST",
            f"payments/{payment['id']}",
            {
                "version": payment["version"],
                "actions": [
                    {
                        "action": "addTransaction",
                        "transaction": {
                            "type": "Refund",
                            "amount": order["totalPrice"],
                            "state": "Success",
                        },
                    }
                ],
            },
        )
        refunded = await status_when(handle, lambda s: s.totals.events == 2)
        await status_when(handle, lambda s: s.windows >= refunded.windows + 8)

    # Then Insider holds one purchase and one refund, live (journeys may fire)
    events = emu.insider_events()
    assert Counter(e["event_name"] for e in events) == {"purchase": 1, "purchase_refund": 1}
    assert all(e["_skip_hook"] is False for e in events)
    assert {e["event_params"]["event_group_id"] for e in events} == {
        order.get("orderNumber") or order["id"]
    }
