"""A deleted resource is named only by the notification's user-provided identifiers."""

from __future__ import annotations

from typing import Any

import pytest

from ct_insider.journeys.envelopes import parse_delivery

MESSAGE: dict[str, Any] = {
    "notificationType": "Message",
    "projectKey": "p",
    "id": "m-1",
    "sequenceNumber": 4,
    "resource": {"typeId": "customer", "id": "c-1"},
    "resourceVersion": 5,
    "type": "CustomerDeleted",
    "createdAt": "2026-11-26T18:00:00.000Z",
}
CHANGE: dict[str, Any] = {
    "notificationType": "ResourceDeleted",
    "projectKey": "p",
    "resource": {"typeId": "customer", "id": "c-1"},
    "version": 5,
    "modifiedAt": "2026-11-26T18:00:00.000Z",
}


@pytest.mark.parametrize("delivery", [MESSAGE, CHANGE], ids=["message", "change"])
def test_user_provided_identifiers_are_kept_by_their_commercetools_names(
    delivery: dict[str, Any],
) -> None:
    # Given a deletion naming the customer's key, number and external id (and a slug)
    body = {
        **delivery,
        "resourceUserProvidedIdentifiers": {
            "key": "jane-key",
            "customerNumber": "C-7",
            "externalId": "ext-9",
            "slug": {"en": "not-an-identifier"},
        },
    }
    # When it is parsed
    notification = parse_delivery(body)
    # Then the string identifiers are there under the names `uuid_source` uses
    assert notification is not None
    assert notification.user_provided == {
        "key": "jane-key",
        "customerNumber": "C-7",
        "externalId": "ext-9",
    }


def test_a_delivery_without_them_names_none() -> None:
    notification = parse_delivery(MESSAGE)
    assert notification is not None
    assert notification.user_provided == {}
