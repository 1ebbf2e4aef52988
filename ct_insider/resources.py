"""What the connector syncs: one registry entry per resource a sync chunk pages through.

Every table that lists resources derives from `REGISTRY`: the sync activity's endpoints,
expansions and senders, the delta sync's passes per entity, the backfill's phases per
target, the resource each consistency check samples, what a rejected record is as a dead
letter and where a re-drive reads it again, and the CLI's choices. Adding a resource is one
entry here (a new kind of sender, re-drive reader or check also needs its code in
activities/sync.py, ct_insider/sync/redrive.py or activities/check.py, which mypy and unit
tests hold to every `Sender`, `Redrive` and check entity).

Pure: no Temporal, no I/O, so workflows, activities and starters all read it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator

from ct_insider.sync.customers import CUSTOMER_EXPAND
from ct_insider.sync.fingerprints import CONTAINER as FINGERPRINTS
from ct_insider.sync.orders import ORDER_EXPAND


class Sender(StrEnum):
    """What a page of a resource is handed to (activities/sync.py builds the callable)."""

    CUSTOMERS = "customers"  # profiles (attributes, identifiers)
    ORDERS = "orders"  # purchase, refund and cancellation events, through the ledger
    ORDERS_OF_PAYMENTS = "orders-of-payments"  # a refund changes the payment, not its order
    PRODUCTS = "products"  # catalog items, one per variant and market
    PRODUCTS_OF_SKUS = "products-of-skus"  # stock and standalone prices name a SKU
    PRODUCTS_OF_CATEGORIES = "products-of-categories"  # a renamed category's products
    VANISHED_PRODUCTS = "vanished-products"  # hide what commercetools no longer has

    @property
    def sends_order_events(self) -> bool:
        """Sends events Insider cannot deduplicate: in-flight markers and settlement apply."""
        return self in (Sender.ORDERS, Sender.ORDERS_OF_PAYMENTS)


class Redrive(StrEnum):
    """How `ct-insider dlq retry` reads a sync letter's record again and sends it
    (ct_insider/sync/redrive.py holds the code of each)."""

    CUSTOMERS = "customers"  # read the customers, send their profiles
    ORDERS = "orders"  # read the orders, send their events through the ledger
    PRODUCTS = "products"  # refresh the products' catalog items (hide the deleted ones)


@dataclass(frozen=True)
class SyncedResource:
    name: str  # what workflows and the CLI call it
    sender: Sender
    # What a record this resource's pages reject is as a dead letter (payments stand for
    # the orders holding them; stock, prices and categories for the catalog items).
    dead_letter_entity: str
    path: str = ""  # the commercetools endpoint read (default: the name)
    expand: tuple[str, ...] = ()
    delta: str | None = None  # the delta sync entity whose windows read it
    backfill: str | None = None  # the backfill target that runs it as a phase
    in_backfill_all: bool = False  # also a phase of `backfill all`
    # The consistency check entity that samples this resource's records and compares them
    # with Insider. Only sampled resources name one: what the others change (a refund on a
    # payment, stock, a standalone price) is compared only as part of a sampled record (an
    # order's events, a product's items), and nothing samples a category or the sweep.
    check: str | None = None
    # Set on the one resource per dead-letter entity that a re-drive reads again (a letter
    # names that resource and the record's id in it).
    redrive: Redrive | None = None

    @property
    def endpoint(self) -> str:
        return self.path or self.name


# In phase order: a target's phases, and a delta window's passes, run in this order
# (customers first: their profiles carry the attributes the orders' events then join).
REGISTRY: tuple[SyncedResource, ...] = (
    SyncedResource(
        "customers",
        Sender.CUSTOMERS,
        "customer",
        expand=CUSTOMER_EXPAND,
        delta="customers",
        backfill="customers",
        in_backfill_all=True,
        check="customers",
        redrive=Redrive.CUSTOMERS,
    ),
    SyncedResource(
        "orders",
        Sender.ORDERS,
        "order",
        expand=ORDER_EXPAND,
        delta="orders",
        backfill="orders",
        in_backfill_all=True,
        check="orders",
        redrive=Redrive.ORDERS,
    ),
    # Refunds are payment transactions: adding one changes the payment, not its order.
    SyncedResource("payments", Sender.ORDERS_OF_PAYMENTS, "order", delta="orders"),
    # The full catalog sync is the backfill target "catalog".
    SyncedResource(
        "products",
        Sender.PRODUCTS,
        "catalog-item",
        delta="catalog",
        backfill="catalog",
        check="catalog",
        redrive=Redrive.PRODUCTS,
    ),
    # Stock and standalone price changes touch their own resources, not products; a renamed
    # category changes no product.
    SyncedResource("inventory", Sender.PRODUCTS_OF_SKUS, "catalog-item", delta="catalog"),
    SyncedResource("standalone-prices", Sender.PRODUCTS_OF_SKUS, "catalog-item", delta="catalog"),
    SyncedResource("categories", Sender.PRODUCTS_OF_CATEGORIES, "catalog-item", delta="catalog"),
    # Pages what Insider's catalog holds (the fingerprint store) to hide products deleted
    # while no message arrived; a delta window cannot see a deletion.
    SyncedResource(
        "catalog-sweep",
        Sender.VANISHED_PRODUCTS,
        "catalog-item",
        path=f"custom-objects/{FINGERPRINTS}",
        backfill="catalog",
    ),
)

BACKFILL_ALL = "all"


def _named(names: Collection[str], kind: str) -> Callable[[str], str]:
    def known(value: str) -> str:
        if value not in names:
            raise ValueError(f"unknown {kind} {value!r}: one of {', '.join(names)}")
        return value

    return known


def _one_each(registry: Sequence[SyncedResource], field: str, what: str) -> dict[str, str]:
    """Group -> its one resource, for a field that at most one resource per group sets."""
    groups = _groups(registry, field)
    shared = {group: names for group, names in groups.items() if len(names) > 1}
    if shared:
        raise ValueError(f"{what} names one resource each: {shared}")
    return {group: names[0] for group, names in groups.items()}


def _groups(registry: Sequence[SyncedResource], field: str) -> dict[str, tuple[str, ...]]:
    """Group -> its resources in registry order, for one grouping field."""
    groups: dict[str, list[str]] = {}
    for entry in registry:
        group = getattr(entry, field)
        if group is not None:
            groups.setdefault(group, []).append(entry.name)
    return {group: tuple(names) for group, names in groups.items()}


@dataclass(frozen=True)
class Tables:
    """Everything derived from a registry."""

    by_name: dict[str, SyncedResource]
    delta_passes: dict[str, tuple[str, ...]]  # delta entity -> the passes of each window
    backfill_phases: dict[str, tuple[str, ...]]  # target -> phases; `all`: those marked
    check_samples: dict[str, str]  # check entity -> the one resource it samples
    dead_letter_entities: dict[str, str]  # resource -> what its rejected records are
    redrive_reads: dict[str, SyncedResource]  # dead-letter entity -> what a re-drive reads

    @property
    def backfill_choices(self) -> tuple[str, ...]:
        """What `ct-insider backfill` offers: the targets of `all`, and `all` (the catalog's
        full sync is `ct-insider sync catalog`)."""
        return (*self.backfill_phases[BACKFILL_ALL], BACKFILL_ALL)


def derive(registry: Sequence[SyncedResource]) -> Tables:
    names = [entry.name for entry in registry]
    if len(set(names)) != len(names):
        raise ValueError(f"a resource is registered twice: {names}")
    return Tables(
        by_name={entry.name: entry for entry in registry},
        delta_passes=_groups(registry, "delta"),
        backfill_phases={
            **_groups(registry, "backfill"),
            BACKFILL_ALL: tuple(entry.name for entry in registry if entry.in_backfill_all),
        },
        check_samples=_one_each(registry, "check", "a check samples"),
        dead_letter_entities={entry.name: entry.dead_letter_entity for entry in registry},
        redrive_reads=_redrive_reads(registry),
    )


def _redrive_reads(registry: Sequence[SyncedResource]) -> dict[str, SyncedResource]:
    """Every dead-letter entity's one resource a re-drive reads again."""
    reads: dict[str, SyncedResource] = {}
    for entry in registry:
        if entry.redrive is None:
            continue
        if entry.dead_letter_entity in reads:
            raise ValueError(f"a re-drive reads one resource per dead letter entity: {entry.name}")
        reads[entry.dead_letter_entity] = entry
    unread = {entry.dead_letter_entity for entry in registry} - set(reads)
    if unread:
        raise ValueError(f"no resource with a re-drive reader for dead letters {sorted(unread)}")
    return reads


TABLES = derive(REGISTRY)
BY_NAME = TABLES.by_name
RESOURCE_NAMES: tuple[str, ...] = tuple(BY_NAME)
DELTA_PASSES = TABLES.delta_passes
DELTA_ENTITIES: tuple[str, ...] = tuple(DELTA_PASSES)
BACKFILL_PHASES = TABLES.backfill_phases
BACKFILL_TARGETS: tuple[str, ...] = tuple(BACKFILL_PHASES)
BACKFILL_CHOICES = TABLES.backfill_choices
CHECK_SAMPLES = TABLES.check_samples
CHECK_ENTITIES: tuple[str, ...] = tuple(CHECK_SAMPLES)
DEAD_LETTER_ENTITIES = TABLES.dead_letter_entities
REDRIVE_READS = TABLES.redrive_reads

# Validated names (pydantic checks them in workflow and activity inputs; to mypy they are
# strings, since the registry, not a Literal, is where a new one is added).
Resource = Annotated[str, AfterValidator(_named(RESOURCE_NAMES, "resource"))]
DeltaEntity = Annotated[str, AfterValidator(_named(DELTA_ENTITIES, "delta entity"))]
BackfillTarget = Annotated[str, AfterValidator(_named(BACKFILL_TARGETS, "backfill target"))]
CheckEntity = Annotated[str, AfterValidator(_named(CHECK_ENTITIES, "check entity"))]


def synced(name: str) -> SyncedResource:
    """The registry entry of a resource name (a validated `Resource`)."""
    return BY_NAME[name]
