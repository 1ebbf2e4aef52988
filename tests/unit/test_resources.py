"""The registry of synced resources, and every table and choice derived from it."""

from __future__ import annotations

import argparse
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from activities.sync import EXPAND, SyncActivities, SyncChunkInput, path_of
from ct_insider import resources
from ct_insider.resources import REGISTRY, Sender, SyncedResource, derive
from ct_insider.sync.window import Window
from starters.cli import _parser
from workflows.backfill import PHASES, BackfillInput
from workflows.delta import PASSES, DeltaSyncInput


def _stub(name: str) -> Any:
    def stub(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{name} is chosen here, never called")

    stub.__name__ = name
    return stub


def _activities() -> SyncActivities:
    """The activity object with stand-ins for the clients: only `_sender`'s choice of
    callable is under test, nothing is called."""
    activities = SyncActivities.__new__(SyncActivities)
    stand_ins = {
        "_insider": object(),
        "_mapping": object(),
        "_orders": SimpleNamespace(
            send_batch=_stub("send_batch"), send_for_payments=_stub("send_for_payments")
        ),
        "_catalog": SimpleNamespace(
            send_products=_stub("send_products"),
            send_for_skus=_stub("send_for_skus"),
            send_for_categories=_stub("send_for_categories"),
            hide_vanished=_stub("hide_vanished"),
        ),
    }
    for name, value in stand_ins.items():
        setattr(activities, name, value)
    return activities


def test_every_resource_gets_the_sender_its_entry_names() -> None:
    activities = _activities()
    expected = {
        Sender.CUSTOMERS: "send_customer_batch",
        Sender.ORDERS: "send_batch",
        Sender.ORDERS_OF_PAYMENTS: "send_for_payments",
        Sender.PRODUCTS: "send_products",
        Sender.PRODUCTS_OF_SKUS: "send_for_skus",
        Sender.PRODUCTS_OF_CATEGORIES: "send_for_categories",
        Sender.VANISHED_PRODUCTS: "hide_vanished",
    }
    for entry in REGISTRY:
        sender: Any = activities._sender(
            SyncChunkInput(lane="test", entity=entry.name, window=Window())
        )
        called = getattr(sender, "func", sender)  # a partial's function, or the callable
        assert called.__name__ == expected[entry.sender], entry.name
    # and no sender is left without a resource
    assert {entry.sender for entry in REGISTRY} == set(Sender)


def test_paths_and_expansions_come_from_the_registry() -> None:
    assert set(EXPAND) == {entry.name for entry in REGISTRY}
    assert EXPAND["orders"] == ("paymentInfo.payments[*]", "discountCodes[*].discountCode")
    assert path_of("customers") == "customers"
    assert path_of("standalone-prices") == "standalone-prices"
    assert path_of("catalog-sweep") == "custom-objects/ct-insider-catalog-fingerprints"


def test_delta_passes_backfill_phases_and_checks_are_the_registry_grouped() -> None:
    # (the tables these replaced, spelled out: the derivation must reproduce them)
    assert PASSES == {
        "customers": ("customers",),
        "orders": ("orders", "payments"),
        "catalog": ("products", "inventory", "standalone-prices", "categories"),
    }
    assert PHASES == {
        "customers": ["customers"],
        "orders": ["orders"],
        "catalog": ["products", "catalog-sweep"],
        "all": ["customers", "orders"],
    }
    assert resources.CHECKED == {
        "customers": ("customers",),
        "orders": ("orders", "payments"),
        "catalog": (
            "products",
            "inventory",
            "standalone-prices",
            "categories",
            "catalog-sweep",
        ),
    }
    # only order events are settled by reading Insider
    assert [e.name for e in REGISTRY if e.sender.sends_order_events] == ["orders", "payments"]


def test_an_added_entry_shows_up_in_every_derived_table() -> None:
    # Given one more resource, read by the orders delta, part of `backfill all`, checked
    # with the customers
    extra = SyncedResource(
        "shopping-lists",
        Sender.CUSTOMERS,
        delta="orders",
        backfill="wishlists",
        in_backfill_all=True,
        check="customers",
    )
    # When the tables are derived
    tables = derive((*REGISTRY, extra))
    # Then it is a pass, a phase, a CLI choice and checked, after the existing ones
    assert tables.delta_passes["orders"] == ("orders", "payments", "shopping-lists")
    assert tables.backfill_phases["wishlists"] == ("shopping-lists",)
    assert tables.backfill_phases["all"] == ("customers", "orders", "shopping-lists")
    assert tables.backfill_choices == ("customers", "orders", "shopping-lists", "all")
    assert tables.checked["customers"] == ("customers", "shopping-lists")
    with pytest.raises(ValueError, match="registered twice"):
        derive((*REGISTRY, REGISTRY[0]))


def _choices(*path: str) -> list[str]:
    """The choices of the positional argument of `ct-insider <path...>`."""
    parser = _parser()
    for name in path:
        [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = sub.choices[name]
    [positional] = [a for a in parser._actions if a.choices and not a.option_strings]
    return list(positional.choices or [])


def test_cli_choices_are_the_derived_ones() -> None:
    assert _choices("backfill") == list(resources.BACKFILL_CHOICES)
    assert _choices("sync", "delta") == [*resources.DELTA_ENTITIES, "all"]


def test_workflow_inputs_refuse_what_the_registry_does_not_name() -> None:
    with pytest.raises(ValidationError, match="unknown delta entity 'carts'"):
        DeltaSyncInput.model_validate({"entity": "carts"})
    with pytest.raises(ValidationError, match="unknown backfill target 'carts'"):
        BackfillInput.model_validate({"target": "carts"})
    with pytest.raises(ValidationError, match="unknown resource 'carts'"):
        SyncChunkInput(lane="test", entity="carts", window=Window())
    assert DeltaSyncInput(entity="catalog").entity == "catalog"
