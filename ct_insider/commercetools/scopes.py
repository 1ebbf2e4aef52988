"""Which OAuth scopes the connector's features need, and which of them a token lacks (pure).

The default scopes (`CTP_SCOPES` empty) are exactly what these features need, so the
defaults and the check cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Feature = Literal["customers", "orders", "catalog", "delivery records"]
FEATURES: tuple[Feature, ...] = ("customers", "orders", "catalog", "delivery records")


@dataclass(frozen=True)
class ScopeNeed:
    name: str  # without the project key, e.g. view_customers
    feature: Feature
    why: str


NEEDS: tuple[ScopeNeed, ...] = (
    ScopeNeed("view_customers", "customers", "customer profiles"),
    ScopeNeed("view_customer_groups", "customers", "the customer group key (expanded)"),
    ScopeNeed("view_orders", "orders", "purchases, cancellations and return refunds"),
    ScopeNeed("view_payments", "orders", "refund transactions of payments"),
    ScopeNeed("view_customers", "orders", "an order's customer (uuid and guest checks)"),
    ScopeNeed("view_discount_codes", "orders", "discount codes of an order (expanded)"),
    ScopeNeed("view_published_products", "catalog", "product projections"),
    ScopeNeed("view_products", "catalog", "products by SKU, inventory entries, the sweep"),
    ScopeNeed("view_categories", "catalog", "category paths"),
    ScopeNeed("view_standalone_prices", "catalog", "standalone prices"),
    ScopeNeed(
        "manage_key_value_documents",
        "delivery records",
        "custom objects: delivery ledger, dead letters, catalog fingerprints",
    ),
)

# A scope that covers others besides itself (manage_X also covers view_X).
_BROADER: dict[str, frozenset[str]] = {
    "view_products": frozenset({"view_published_products"}),
    "manage_products": frozenset({"view_products", "view_published_products"}),
}


def default_scope_names(features: Iterable[Feature] = FEATURES) -> tuple[str, ...]:
    """Every scope the features need, each once, in a stable order."""
    wanted = set(features)
    return tuple(dict.fromkeys(need.name for need in NEEDS if need.feature in wanted))


def _covered_names(granted: Iterable[str], project_key: str) -> frozenset[str] | None:
    """The scope names the granted scopes cover for this project (None: all of them)."""
    names: set[str] = set()
    for scope in granted:
        name, _, project = scope.partition(":")
        if project != project_key:
            continue
        if name == "manage_project":
            return None
        names.add(name)
        if name.startswith("manage_"):
            names.add("view_" + name.removeprefix("manage_"))
        names |= _BROADER.get(name, frozenset())
    return frozenset(names)


@dataclass(frozen=True)
class MissingScope:
    scope: str  # with the project key, as it is requested
    features: tuple[Feature, ...]
    why: tuple[str, ...]


def missing_scopes(
    granted: Iterable[str], project_key: str, features: Sequence[Feature] = FEATURES
) -> list[MissingScope]:
    """The needed scopes `granted` does not cover, each with the features that need it."""
    covered = _covered_names(granted, project_key)
    if covered is None:
        return []
    missing: dict[str, list[ScopeNeed]] = {}
    for need in NEEDS:
        if need.feature in features and need.name not in covered:
            missing.setdefault(need.name, []).append(need)
    return [
        MissingScope(
            scope=f"{name}:{project_key}",
            features=tuple(dict.fromkeys(need.feature for need in needs)),
            why=tuple(need.why for need in needs),
        )
        for name, needs in missing.items()
    ]
