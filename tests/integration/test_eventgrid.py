"""Azure Event Grid deliveries to the bridge (bridge/eventgrid.py) over HTTP: both handshakes,
events in the Event Grid schema and as CloudEvents reaching the real worker and the Insider
emulator, authentication, and a batch with an event that is no commercetools delivery."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from bridge.eventgrid import PATH, VALIDATION_EVENT
from tests.bridge_helpers import TOKEN, as_cloudevent, message, serving_bridge, stored_letters
from tests.conftest import Emulators, eventually
from workers.main import Workers

pytestmark = pytest.mark.integration


def as_eventgrid(platform: dict[str, Any]) -> dict[str, Any]:
    """An Event Grid schema event carrying a commercetools delivery."""
    return {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/s/resourceGroups/g/providers/Microsoft.EventGrid/topics/ct",
        "subject": f"{platform['resource']['typeId']}/{platform['resource']['id']}",
        "eventType": platform["type"],
        "eventTime": platform["createdAt"],
        "data": platform,
        "dataVersion": "1",
        "metadataVersion": "1",
    }


def profile_of(emu: Emulators, customer_id: str) -> dict[str, Any] | None:
    return next(
        (u for u in emu.insider_users() if u["identifiers"].get("uuid") == customer_id), None
    )


async def test_eventgrid_handshakes_and_deliveries_in_both_schemas(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    [(first_id, _), (second_id, _), (third_id, _)] = emu.seeder().customers(3)
    first, second, third = (
        emu.ct("GET", f"customers/{i}") for i in (first_id, second_id, third_id)
    )
    async with (
        serving_bridge(client, worker.journey_task_queue, emu) as bridge,
        httpx.AsyncClient(base_url=bridge.url, timeout=30) as http,
    ):
        url = f"{PATH}?token={TOKEN}"  # how an Event Grid webhook authenticates
        # Given Event Grid validating a new event subscription (Event Grid schema)
        validation = [
            {
                "id": str(uuid.uuid4()),
                "topic": "/subscriptions/s/resourceGroups/g/providers/Microsoft.EventGrid/topics/ct",
                "subject": "",
                "eventType": VALIDATION_EVENT,
                "eventTime": "2026-12-06T10:00:00Z",
                "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
                "dataVersion": "2",
                "metadataVersion": "1",
            }
        ]
        validation_headers = {"aeg-event-type": "SubscriptionValidation"}
        # Then without the token it is refused, with it the code is echoed back
        refused = await http.post(PATH, json=validation, headers=validation_headers)
        assert refused.status_code == 401
        answered = await http.post(url, json=validation, headers=validation_headers)
        assert answered.status_code == 200
        assert answered.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
        # And the CloudEvents abuse-protection handshake is allowed for the origin that asks
        options = await http.options(url, headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
        assert options.status_code == 200
        assert options.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"

        # When a batch in the Event Grid schema and a CloudEvent arrive
        batch = await http.post(
            url,
            json=[as_eventgrid(message("customer", first_id, "CustomerCreated", customer=first))],
            headers={"aeg-event-type": "Notification"},
        )
        cloudevent = await http.post(
            url,
            json=as_cloudevent(message("customer", second_id, "CustomerCreated", customer=second)),
            headers={
                "aeg-event-type": "Notification",
                "Content-Type": "application/cloudevents+json",
            },
        )
        # Then both are accepted and both customers reach Insider with their sign-up
        assert (batch.status_code, cloudevent.status_code) == (202, 202), batch.text
        assert batch.json()["signals"] == cloudevent.json()["signals"] == 1
        for customer_id in (first_id, second_id):
            profile = await eventually(lambda: profile_of(emu, customer_id))  # noqa: B023
            assert [e["event_name"] for e in profile["events"]] == ["sign_up_confirmation"]

        # When a batch holds an event that is no commercetools delivery beside a good one
        mixed = await http.post(
            url,
            json=[
                {"id": "not-ct", "eventType": "Other", "data": {"hello": "world"}},
                as_eventgrid(message("customer", third_id, "CustomerCreated", customer=third)),
            ],
            headers={"aeg-event-type": "Notification"},
        )
        # Then the batch is taken (Event Grid would retry a 4xx like a 5xx, the whole batch
        # for a day): the bad event is dead-lettered in our store, naming it and why, and the
        # good one is stored
        assert mixed.status_code == 202, mixed.text
        assert mixed.json()["dead_lettered"] == ["eventgrid:not-ct"]
        await eventually(lambda: profile_of(emu, third_id))
        stats = await bridge.stats()
        [letter] = [
            letter for letter in await stored_letters(emu) if letter.record_id == "eventgrid:not-ct"
        ]
        assert "notificationType is missing" in letter.reasons[0]
    assert stats["eventgrid_validated"] == 1
    assert stats["eventgrid_handshake"] == 1
    assert stats["eventgrid_unreadable"] == 1
    assert stats["accepted:CustomerCreated"] == 3
