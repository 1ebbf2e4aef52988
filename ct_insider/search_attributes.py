"""The search attributes our workflows carry, so operators find runs in the Temporal UI.

    CtEntity="customers" AND CtRunKind="backfill"      every customer backfill
    CtCustomerId="<id>"                                 runs about that one customer
    CtRunKind="check" AND CtOutcome="drift"             checks that found drift
    CtOutcome="failed"                                  every run that failed

CtCustomerId is set only by runs about a single customer, named by id when they start:
`ct-insider dlq retry` of that customer's dead letter, and the erasure of a customer named
by id (`ct-insider erase --customer <id>`). Syncs, checks and journey shards handle many
customers at once and do not set it; nor does an erasure started by email.

Timer workflows (cart recovery, replenishment: ct_insider/timers.py) also carry

    CtTimerKind="cart"                                  every open cart-recovery timer
    CtTimerDueAt < "2026-12-07T00:00:00Z"               timers due before a moment

All are keywords but CtTimerDueAt (a datetime). A server must know them before a workflow sets them (a workflow task
that upserts an unknown attribute fails and is retried until it is registered), so they are
registered by `ensure_search_attributes`: `ct-insider setup temporal`, the worker at its
start and every command that starts a workflow, wherever the server lets them (a dev server,
a self-hosted cluster); the dev servers started by tests and `make run` get them on their
command line. Where the server refuses (Temporal Cloud answers PERMISSION_DENIED: add them in
the Cloud UI or with tcld), the commands say so and exit 2 (`SearchAttributesRefused`), and
`ct-insider doctor` names the missing ones.
"""

from __future__ import annotations

from typing import Any, Literal

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import (
    SearchAttributeIndexedValueType,
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)
from temporalio.service import RPCError

ENTITY = SearchAttributeKey.for_keyword("CtEntity")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CtCustomerId")
RUN_KIND = SearchAttributeKey.for_keyword("CtRunKind")
OUTCOME = SearchAttributeKey.for_keyword("CtOutcome")
# Set by runs (syncs, checks, shards, ...): RUN_KIND and OUTCOME always.
RUN_ATTRIBUTES: tuple[SearchAttributeKey[str], ...] = (ENTITY, CUSTOMER_ID, RUN_KIND, OUTCOME)
# Set by timer workflows: their kind, and when their next timer fires (unset: none armed).
TIMER_KIND = SearchAttributeKey.for_keyword("CtTimerKind")
TIMER_DUE_AT = SearchAttributeKey.for_datetime("CtTimerDueAt")
# Every attribute setup registers.
ALL: tuple[SearchAttributeKey[Any], ...] = (*RUN_ATTRIBUTES, TIMER_KIND, TIMER_DUE_AT)

RunKind = Literal[
    "backfill",
    "delta",
    "check",
    "catalog-change",
    "redrive",
    "journey-shard",
    "erasure",
    "replenishment",
    "cart",
]
# "rejections": finished, but some records were refused (they are in `ct-insider dlq`).
Outcome = Literal["running", "completed", "rejections", "failed", "drift"]

# The patch id guarding the upserts in workflows that ran before they set attributes.
PATCH_ID = "search-attributes"


_TYPE_NAMES = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
}


def _registered_type(key: SearchAttributeKey[Any]) -> IndexedValueType.ValueType:
    return IndexedValueType.ValueType(key.indexed_value_type.value)


class SearchAttributeConflict(Exception):
    """The namespace already has one of our names, registered with another type."""


class SearchAttributesRefused(Exception):
    """The namespace lacks some of our attributes and the server refused to register them."""

    def __init__(self, namespace: str, missing: list[str], reason: str) -> None:
        super().__init__(
            f"namespace {namespace} lacks the search attributes {', '.join(missing)} and "
            f"Temporal refused to register them ({reason}): run `ct-insider setup temporal` "
            "with credentials allowed to (on Temporal Cloud add them in the Cloud UI or with "
            f"`tcld namespace search-attributes add`: {cloud_types(missing)})"
        )
        self.namespace = namespace
        self.missing = missing
        self.reason = reason


def cloud_types(names: list[str]) -> str:
    """`CtEntity=Keyword, ...`: what an operator types into the Cloud UI or tcld."""
    types = {key.name: _TYPE_NAMES[key.indexed_value_type] for key in ALL}
    return ", ".join(f"{name}={types[name]}" for name in names)


def dev_server_flags() -> list[str]:
    """`temporal server start-dev` arguments that register every attribute at startup."""
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={_TYPE_NAMES[key.indexed_value_type]}"]
    return flags


async def missing_search_attributes(client: Client, namespace: str) -> list[str]:
    """Which of our attributes the namespace lacks (raises SearchAttributeConflict for one
    registered with another type; an RPCError where listing is refused)."""
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    known = dict(listed.custom_attributes)
    wrong = [
        key.name for key in ALL if key.name in known and known[key.name] != _registered_type(key)
    ]
    if wrong:
        raise SearchAttributeConflict(
            f"namespace {namespace} has {', '.join(wrong)} registered with another type than "
            "ct-insider's; remove them or use another namespace"
        )
    return [key.name for key in ALL if key.name not in known]


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register whichever of our attributes the namespace lacks; returns the names added.

    Idempotent. Needs the operator service (a dev server or a self-hosted cluster; on
    Temporal Cloud they are added in the Cloud UI or with tcld, and adding them fails with
    PERMISSION_DENIED): raises SearchAttributesRefused when adding is refused, an RPCError
    when even listing them is."""
    missing = await missing_search_attributes(client, namespace)
    if missing:
        by_name = {key.name: key for key in ALL}
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=namespace,
                    search_attributes={name: _registered_type(by_name[name]) for name in missing},
                )
            )
        except RPCError as exc:
            status = exc.status.name if exc.status is not None else "error"
            raise SearchAttributesRefused(namespace, missing, f"{status}: {exc.message}") from exc
    return missing


def run_attributes(
    kind: RunKind,
    entity: str | None = None,
    customer_id: str | None = None,
    outcome: Outcome = "running",
) -> TypedSearchAttributes:
    """What a starter passes to `start_workflow(search_attributes=...)`."""
    return TypedSearchAttributes(_pairs(kind, entity, customer_id, outcome))


def run_updates(
    kind: RunKind,
    entity: str | None = None,
    customer_id: str | None = None,
    outcome: Outcome = "running",
) -> list[SearchAttributeUpdate[str]]:
    """The same, for `workflow.upsert_search_attributes` at the start of a run."""
    return [pair.key.value_set(pair.value) for pair in _pairs(kind, entity, customer_id, outcome)]


def outcome_update(outcome: Outcome) -> list[SearchAttributeUpdate[str]]:
    """`workflow.upsert_search_attributes(outcome_update("completed"))` when a run ends."""
    return [OUTCOME.value_set(outcome)]


def _pairs(
    kind: RunKind, entity: str | None, customer_id: str | None, outcome: Outcome
) -> list[SearchAttributePair[str]]:
    pairs = [SearchAttributePair(RUN_KIND, kind), SearchAttributePair(OUTCOME, outcome)]
    if entity:
        pairs.append(SearchAttributePair(ENTITY, entity))
    if customer_id:
        pairs.append(SearchAttributePair(CUSTOMER_ID, customer_id))
    return pairs
