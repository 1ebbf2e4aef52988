"""Consistency-check comparisons: expected (the mapping) against what Insider was read to hold."""

from __future__ import annotations

from typing import Any

from ct_insider.checks.customers import compare_customer, same_value
from ct_insider.checks.drift import DriftReport, RecordDrift
from ct_insider.checks.orders import ExpectedOrder, compare_orders
from ct_insider.insider.models import Attributes, Event, Identifiers, User
from ct_insider.logging import pii_fingerprint
from ct_insider.mapping.orders import KeyedEvent

USER = User(
    identifiers=Identifiers(uuid="c-1", email="ann@example.com"),
    attributes=Attributes(
        name="Ann",
        email="ann@example.com",
        language="en_US",
        birthday="1990-01-01T00:00:00Z",
        gdpr_optin=True,
        custom={"ct_customer_group": "gold", "ct_stores": ["eu"]},
    ),
)


def profile(**overrides: Any) -> dict[str, Any]:
    attributes = {
        "name": "Ann",
        "email": "ann@example.com",
        "uuid": "c-1",
        "language": "en_US",
        "birthday": "1990-01-01T00:00:00+00:00",  # same moment, other spelling
        "gdpr": True,  # Insider reads GDPR consent back as `gdpr`
        "c_ct_customer_group": "gold",  # Insider's prefix for custom attributes
        "c_ct_stores": ["us", "eu"],  # arrays append: more than expected is no drift
        "iid": "iid-1",
    }
    attributes.update(overrides)
    return {"attributes": attributes}


def test_a_profile_as_mapped_has_no_drift() -> None:
    assert compare_customer("c-1", USER, profile()) is None


def test_no_profile_is_missing() -> None:
    drift = compare_customer("c-1", USER, None)
    assert drift == RecordDrift(kind="missing", record_id="c-1", detail="no profile in Insider")


def test_stale_fields_are_named_and_personal_values_masked() -> None:
    drift = compare_customer(
        "c-1", USER, profile(name="Eve", language="de_DE", c_ct_customer_group=None)
    )
    assert drift is not None
    assert drift.kind == "stale"
    assert [(f.field, f.expected, f.found) for f in drift.fields] == [
        ("language", "en_US", "de_DE"),
        ("name", pii_fingerprint("Ann"), pii_fingerprint("Eve")),
        ("custom.ct_customer_group", pii_fingerprint("gold"), "(none)"),
    ]


def test_custom_attribute_values_are_fingerprinted() -> None:
    # Custom fields of commercetools may hold anything personal: never printed raw.
    drift = compare_customer("c-1", USER, profile(c_ct_customer_group="Jane's second phone"))
    assert drift is not None
    [field] = drift.fields
    assert (field.field, field.expected, field.found) == (
        "custom.ct_customer_group",
        pii_fingerprint("gold"),
        pii_fingerprint("Jane's second phone"),
    )
    assert "second phone" not in drift.model_dump_json()


def test_custom_attributes_nested_under_custom_are_read_too() -> None:
    found = profile()
    del found["attributes"]["c_ct_customer_group"]
    found["attributes"]["custom"] = {"ct_customer_group": "silver"}
    drift = compare_customer("c-1", USER, found)
    assert drift is not None
    assert [(f.field, f.found) for f in drift.fields] == [
        ("custom.ct_customer_group", pii_fingerprint("silver"))
    ]


def test_values_compare_by_meaning() -> None:
    assert same_value(2, 2.0)
    assert not same_value(True, 1)
    assert not same_value(["a", "b"], ["a"])
    assert same_value("2024-05-01T10:00:00Z", "2024-05-01T12:00:00+02:00")
    assert not same_value("en_US", "2024-05-01T10:00:00Z")


def purchase(key: str, group: str, sku: str) -> KeyedEvent:
    return KeyedEvent(
        key,
        Event(
            event_name="purchase",
            timestamp="2026-01-01T00:00:00Z",
            event_params={"event_group_id": group, "product_id": sku},
        ),
    )


ORDERS = [
    ExpectedOrder(
        "o-1",
        "ORD-1",
        [
            purchase("purchase:l1", "ORD-1", "A"),
            purchase("purchase:l2", "ORD-1", "A"),
            purchase("purchase:l3", "ORD-1", "B"),
        ],
    ),
    ExpectedOrder("o-2", "ORD-2", [purchase("purchase:l4", "ORD-2", "C")]),
]


def stored(*events: tuple[str, str]) -> dict[str, list[dict[str, Any]]]:
    return {"purchase": [{"event_group_id": g, "product_id": p} for g, p in events]}


def test_every_event_held_once_is_no_drift() -> None:
    result = compare_orders(
        ORDERS, stored(("ORD-1", "A"), ("ORD-1", "A"), ("ORD-1", "B"), ("ORD-2", "C"))
    )
    assert result.drift == []
    assert result.held == {
        "o-1": {"purchase:l1", "purchase:l2", "purchase:l3"},
        "o-2": {"purchase:l4"},
    }


def test_missing_duplicated_and_extra_events() -> None:
    result = compare_orders(
        ORDERS,
        stored(
            ("ORD-1", "A"),  # one of two A lines missing
            ("ORD-1", "B"),
            ("ORD-1", "Z"),  # not produced by the order: extra
            ("ORD-2", "C"),
            ("ORD-2", "C"),  # stored twice
            ("ORD-9", "Q"),  # an order not checked: ignored
        ),
    )
    assert [(d.kind, d.record_id, d.item, d.count) for d in result.drift] == [
        ("missing", "o-1", "purchase:l2", 1),
        ("duplicated", "o-2", "purchase:l4", 1),
        ("extra", "o-1", "purchase:Z", 1),
    ]
    assert result.held["o-1"] == {"purchase:l1", "purchase:l3"}
    assert result.missing == {"o-1": {"purchase:l2"}, "o-2": set()}


def test_no_profile_means_every_event_missing() -> None:
    result = compare_orders(ORDERS, {})
    assert {d.item for d in result.drift if d.kind == "missing"} == {
        "purchase:l1",
        "purchase:l2",
        "purchase:l3",
        "purchase:l4",
    }


def test_reports_merge_counts_beyond_what_they_list() -> None:
    total = DriftReport(entity="orders", source="insider-profile-api")
    for n in range(3):
        part = DriftReport(entity="orders", source="insider-profile-api", sampled=2, checked=2)
        part.profile_reads, part.units_spent = 2, 5.0
        part.add(RecordDrift(kind="missing", record_id=f"o-{n}"))
        part.notes.append("same note")
        part.too_recent = 1
        total.merge(part)
    assert (total.sampled, total.profile_reads, total.units_spent) == (6, 6, 15.0)
    assert total.too_recent == 3
    assert total.counts.missing == 3
    assert len(total.missing) == 3
    assert total.notes == ["same note"]
    assert total.unrepaired == 3
