"""The registry of synced resources, and every table and choice derived from it."""

from __future__ import annotations

import argparse
import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest
from pydantic import ValidationError

from activities.check import RESOURCES, CheckActivities, CheckChunkInput
from activities.sync import EXPAND, SyncActivities, SyncChunkInput, path_of
from ct_insider import resources
from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.insider.client import InsiderClient
from ct_insider.mapping.config import MappingConfig
from ct_insider.resources import REGISTRY, Redrive, Sender, SyncedResource, derive
from ct_insider.sync import redrive
from ct_insider.sync.catalog import CatalogSender
from ct_insider.sync.orders import OrderEventSender
from ct_insider.sync.reports import SyncStats
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
    # each check samples one resource; what changes the others make is compared only as
    # part of a sampled record
    assert resources.CHECK_SAMPLES == {
        "customers": "customers",
        "orders": "orders",
        "catalog": "products",
    }
    # only order events are settled by reading Insider
    assert [e.name for e in REGISTRY if e.sender.sends_order_events] == ["orders", "payments"]


def test_an_added_entry_shows_up_in_every_derived_table() -> None:
    # Given one more resource, read by the orders delta, part of `backfill all`, sampled
    # by a check of its own, its rejected records letters of their own it re-drives
    extra = SyncedResource(
        "shopping-lists",
        Sender.CUSTOMERS,
        "shopping-list",
        delta="orders",
        backfill="wishlists",
        in_backfill_all=True,
        check="wishlists",
        redrive=Redrive.CUSTOMERS,
    )
    # When the tables are derived
    tables = derive((*REGISTRY, extra))
    # Then it is a pass, a phase, a CLI choice, sampled, and re-driven, after the existing
    assert tables.delta_passes["orders"] == ("orders", "payments", "shopping-lists")
    assert tables.backfill_phases["wishlists"] == ("shopping-lists",)
    assert tables.backfill_phases["all"] == ("customers", "orders", "shopping-lists")
    assert tables.backfill_choices == ("customers", "orders", "shopping-lists", "all")
    assert tables.check_samples["wishlists"] == "shopping-lists"
    assert tables.dead_letter_entities["shopping-lists"] == "shopping-list"
    assert tables.redrive_reads["shopping-list"] is extra
    with pytest.raises(ValueError, match="registered twice"):
        derive((*REGISTRY, REGISTRY[0]))


def test_dead_letters_and_their_redrives_come_from_the_registry() -> None:
    # (the tables these replaced, spelled out: the derivation must reproduce them)
    assert resources.DEAD_LETTER_ENTITIES == {
        "customers": "customer",
        "orders": "order",
        "payments": "order",
        "products": "catalog-item",
        "inventory": "catalog-item",
        "standalone-prices": "catalog-item",
        "categories": "catalog-item",
        "catalog-sweep": "catalog-item",
    }
    assert {e: entry.name for e, entry in resources.REDRIVE_READS.items()} == {
        "customer": "customers",
        "order": "orders",
        "catalog-item": "products",
    }


@pytest.mark.parametrize(
    ("extra", "refusal"),
    [
        # a check samples one resource: a second one would never be read
        (SyncedResource("carts", Sender.ORDERS, "order", check="orders"), "a check samples"),
        # a letter of a new entity must say where a re-drive reads it again
        (SyncedResource("carts", Sender.ORDERS, "cart"), "no resource with a re-drive reader"),
        # one reader per entity: which one would a letter name?
        (
            SyncedResource("carts", Sender.ORDERS, "order", redrive=Redrive.ORDERS),
            "a re-drive reads one resource",
        ),
    ],
)
def test_entries_the_checks_or_redrives_could_not_use_are_refused(
    extra: SyncedResource, refusal: str
) -> None:
    with pytest.raises(ValueError, match=refusal):
        derive((*REGISTRY, extra))


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


class _Calls:
    """Stands in for a client or checker: records which of its methods is called and
    returns `result` (nothing is sent)."""

    def __init__(self, result: object = None) -> None:
        self.called: list[str] = []
        self._result = result

    def __getattr__(self, name: str) -> Any:
        async def record(*args: object, **kwargs: object) -> object:
            self.called.append(name)
            return self._result

        return record


class _CheckActivities(CheckActivities):
    def __init__(self, checker: _Calls) -> None:
        self._stand_in = checker

    @property
    def checker(self) -> Any:
        return self._stand_in


def test_every_check_entity_has_its_checker_and_samples_its_resource() -> None:
    expected = {
        "customers": "check_customers",
        "orders": "check_orders",
        "catalog": "check_catalog",
    }
    # a check entity added to the registry needs its checker in check_records
    assert set(expected) == set(resources.CHECK_ENTITIES)
    for entity, method in expected.items():
        checker = _Calls()
        chunk = CheckChunkInput(entity=entity, ids=["r-1"], lane="test")
        asyncio.run(_CheckActivities(checker).check_records(chunk))
        assert checker.called == [method], entity
        assert RESOURCES[entity] == resources.CHECK_SAMPLES[entity]


class _Commercetools:
    def __init__(self) -> None:
        self.read: list[tuple[str, tuple[str, ...]]] = []

    async def find_in(
        self, resource: str, ids: list[str], predicate: object, expand: tuple[str, ...]
    ) -> list[dict[str, Any]]:
        self.read.append((resource, tuple(expand)))
        return [{"id": record_id} for record_id in ids]


def test_every_redrive_reader_sends_the_way_its_entry_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = {
        Redrive.CUSTOMERS: "send_customer_batch",
        Redrive.ORDERS: "send_batch",
        Redrive.PRODUCTS: "refresh",
    }
    # a reader added to `Redrive` needs its code in SyncRedriver._send (mypy holds the
    # match to every member; this, the member to what it sends with)
    assert set(expected) == set(Redrive)
    for entry in resources.REDRIVE_READS.values():
        assert entry.redrive is not None
        clients, ct = _Calls(SyncStats()), _Commercetools()
        monkeypatch.setattr(redrive, "send_customer_batch", clients.send_customer_batch)
        redriver = redrive.SyncRedriver(
            cast(CommercetoolsClient, ct),
            cast(InsiderClient, object()),
            MappingConfig(),
            cast(OrderEventSender, clients),
            cast(CatalogSender, clients),
        )
        asyncio.run(redriver._send(entry.name, ["r-1"], True, "run"))
        assert expected[entry.redrive] in clients.called, entry.name
        # and a record read again is read like the sync reads it (a catalog refresh reads
        # its products itself)
        read = [] if entry.redrive is Redrive.PRODUCTS else [(entry.endpoint, entry.expand)]
        assert ct.read == read, entry.name
