"""Planning an erasure: which identifiers a person reached Insider under, and which dead
letters are about them (pure code)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ct_insider.deadletters import DeadLetter
from ct_insider.erasure.plan import (
    ErasureRequest,
    ErasureSubject,
    action_for,
    collect_subject,
    erasure_workflow_id,
    identifiers_in_profile,
    letter_names_person,
)
from ct_insider.mapping.config import MappingConfig

CUSTOMER: dict[str, Any] = {
    "id": "c-1",
    "version": 1,
    "createdAt": "2026-01-01T00:00:00Z",
    "lastModifiedAt": "2026-01-01T00:00:00Z",
    "key": "k-1",
    "customerNumber": "N-1",
    "externalId": "X-1",
    "email": "Ada@Example.com",
    "addresses": [{"country": "DE", "mobile": "0151 12345678", "phone": "not a number"}],
}
ORDERS: list[dict[str, Any]] = [
    {"id": "o-1", "customerId": "c-1", "customerEmail": "ada@example.com"},
    {
        "id": "o-2",
        "customerEmail": "ada.old@example.com",
        "anonymousId": "anon-2",
        "shippingAddress": {"country": "US", "phone": "+1 415 555 0101"},
    },
]
CARTS: list[dict[str, Any]] = [{"id": "cart-1", "anonymousId": "anon-3"}]


@pytest.mark.parametrize(
    ("source", "uuid"),
    [("id", "c-1"), ("key", "k-1"), ("customerNumber", "N-1"), ("externalId", "X-1")],
)
def test_every_identifier_the_connector_sent_is_a_target(source: str, uuid: str) -> None:
    config = MappingConfig.model_validate({"uuid_source": source})
    subject = collect_subject(config, ErasureRequest(customer_id="c-1"), CUSTOMER, ORDERS, CARTS)
    assert subject.uuids == [uuid]
    assert subject.emails == ["ada@example.com", "ada.old@example.com"]
    # the phone the customer mapping sends; an order's shipping phone was never sent
    assert subject.phones == ["+4915112345678"]
    assert subject.anonymous_ids == ["anon-2", "anon-3"]
    assert subject.order_ids == ["o-1", "o-2"]
    assert subject.uuid_unknown is None
    # strongest first: deleting the uuid profile takes what merged into it
    assert [t.kind for t in subject.targets()] == [
        "uuid",
        "email",
        "email",
        "phone_number",
        "anonymous_id",
        "anonymous_id",
    ]


def test_only_identifiers_the_connector_sent_are_targets() -> None:
    """A gift recipient's or household's phone and email on the person's orders, and
    another customer's order placed with the person's email, name other people."""
    orders: list[dict[str, Any]] = [
        {
            "id": "o-1",
            "customerId": "c-1",
            "customerEmail": "ada@example.com",
            "shippingAddress": {"country": "DE", "mobile": "0151 99999999", "email": "b@x.com"},
            "billingAddress": {"country": "DE", "phone": "0151 88888888"},
            "itemShippingAddresses": [{"country": "DE", "email": "gift@x.com"}],
        },
        {"id": "o-9", "customerId": "c-2", "customerEmail": "ada@example.com", "anonymousId": "b"},
    ]
    customer = {
        **CUSTOMER,
        "addresses": [*CUSTOMER["addresses"], {"country": "DE", "mobile": "+4915177777777"}],
    }
    subject = collect_subject(MappingConfig(), ErasureRequest(customer_id="c-1"), customer, orders)
    assert subject.emails == ["ada@example.com"]
    assert subject.phones == ["+4915112345678"]
    assert subject.anonymous_ids == []
    assert subject.order_ids == ["o-1"]
    # a profile is theirs when it has no uuid or theirs; another uuid is someone else
    assert subject.owns(None)
    assert subject.owns("c-1")
    assert not subject.owns("c-2")


def test_a_gone_customer_without_a_known_uuid_is_reported() -> None:
    config = MappingConfig.model_validate({"uuid_source": "key"})
    subject = collect_subject(config, ErasureRequest(customer_id="c-1"), None, [])
    assert subject.uuids == []
    assert subject.uuid_unknown is not None
    assert "uuid unknown" in subject.uuid_unknown
    assert "c-1" in subject.uuid_unknown
    named = collect_subject(config, ErasureRequest(customer_id="c-1", uuid="k-1"), None, [])
    assert named.uuid_unknown is None


def test_a_deleted_customer_is_found_by_the_uuid_its_message_named() -> None:
    config = MappingConfig.model_validate({"uuid_source": "key"})
    request = ErasureRequest(customer_id="c-1", uuid="k-1")
    subject = collect_subject(config, request, None, ORDERS)
    assert subject.uuids == ["k-1"]
    assert subject.customer_id == "c-1"
    # without the message's key and without the record, no uuid is guessed
    assert collect_subject(config, ErasureRequest(customer_id="c-1"), None, []).uuids == []
    # with uuid_source id, the id is the uuid
    gone = collect_subject(MappingConfig(), ErasureRequest(customer_id="c-1"), None, [])
    assert gone.uuids == ["c-1"]


def test_a_guest_is_found_by_email_only() -> None:
    request = ErasureRequest(email="Guest@Example.com")
    subject = collect_subject(MappingConfig(), request, None, [ORDERS[1]])
    assert subject.customer_id is None
    assert subject.uuids == []
    assert subject.uuid_unknown is None
    assert subject.emails == ["guest@example.com", "ada.old@example.com"]
    assert erasure_workflow_id(request).startswith("erase-email-")
    assert "guest" not in erasure_workflow_id(request).lower()
    assert erasure_workflow_id(request) == erasure_workflow_id(
        ErasureRequest(email="guest@example.com ")
    )


def test_targets_are_masked_for_reports_but_ids_are_not() -> None:
    subject = collect_subject(MappingConfig(), ErasureRequest(customer_id="c-1"), CUSTOMER, [])
    shown = {t.kind: t.masked() for t in subject.targets()}
    assert shown["uuid"] == "c-1"
    assert shown["email"].startswith("pii:")
    assert "ada" not in shown["email"]
    assert shown["phone_number"].startswith("pii:")


def test_a_profile_names_more_identifiers() -> None:
    found = identifiers_in_profile(
        {
            "email": "Other@Example.com",
            "phone_number": "+4915112345678",
            "custom.ct_anonymous_id": "anon-9",
            "custom": {"ct_anonymous_id": "anon-8"},
            "iid": "x",
        },
        "ct_anonymous_id",
    )
    assert [(t.kind, t.value) for t in found] == [
        ("email", "other@example.com"),
        ("phone_number", "+4915112345678"),
        ("anonymous_id", "anon-9"),
        ("anonymous_id", "anon-8"),
    ]
    assert identifiers_in_profile({"iid": "x"}, "ct_anonymous_id") == []


def test_custom_identifier_is_sent_under_its_configured_name() -> None:
    [target] = ErasureSubject(anonymous_ids=["a-1"]).targets()
    assert target.identifiers("visitor") == {"custom": {"visitor": "a-1"}}


def _letter(record_id: str, redrive: dict[str, Any] | None = None) -> DeadLetter:
    now = datetime.now(UTC)
    return DeadLetter(
        entity="x",
        record_id=record_id,
        reasons=[],
        run="r",
        redrive=redrive,
        first_seen=now,
        last_seen=now,
    )


def test_letters_naming_the_person_are_theirs() -> None:
    subject = ErasureSubject(
        customer_id="c-1", emails=["ada@example.com"], anonymous_ids=["anon-2"], order_ids=["o-1"]
    )
    theirs = [
        _letter("c-1"),
        _letter("o-1"),
        _letter("evt", {"signal": {"identity": {"email": "ADA@example.com"}}}),
        _letter("evt", {"signal": {"identity": {"anonymous_id": "anon-2"}}}),
        _letter("evt", {"signal": {"identity": {"customer_id": "c-1"}}}),
        _letter("msg", {"signal": {"identity": {}, "resource_id": "o-1"}}),
    ]
    others = [
        _letter("c-2"),
        _letter("evt", {"signal": {"identity": {"email": "bob@example.com"}}}),
        _letter("evt", {"signal": {"identity": {"anonymous_id": None}}}),
        _letter("evt", {"signal": "not a signal"}),
    ]
    assert [letter_names_person(letter, subject) for letter in theirs] == [True] * len(theirs)
    assert [letter_names_person(letter, subject) for letter in others] == [False] * len(others)


def test_anonymize_is_kept_and_keep_still_erases_on_request() -> None:
    assert action_for(MappingConfig(customer_deletion="anonymize")) == "anonymize"
    assert action_for(MappingConfig(customer_deletion="delete")) == "delete"
    assert action_for(MappingConfig(customer_deletion="keep")) == "delete"


def test_erase_command_takes_a_customer_or_a_valid_email() -> None:
    from ct_insider.erasure.eraser import _as_written_and_lower
    from starters.erase import erasure_request
    from starters.output import UsageError

    assert erasure_request("c-1", None) == ErasureRequest(customer_id="c-1")
    by_email = erasure_request(None, " Ada@Example.com ")
    assert by_email.email == "ada@example.com"
    # commercetools compares case-sensitively: the orders are searched as typed too
    assert by_email.email_as_written == "Ada@Example.com"
    assert _as_written_and_lower(["ada@example.com"], by_email) == [
        "Ada@Example.com",
        "ada@example.com",
    ]
    with pytest.raises(UsageError):
        erasure_request(None, "not-an-email")
    with pytest.raises(UsageError):
        erasure_request(" ", None)
