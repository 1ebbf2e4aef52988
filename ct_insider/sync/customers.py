"""Customer batches: map commercetools customers and upsert them to Insider."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ct_insider.commercetools.models import Customer
from ct_insider.insider.client import InsiderClient
from ct_insider.insider.models import User
from ct_insider.logging import get_logger
from ct_insider.mapping.config import MappingConfig
from ct_insider.mapping.customers import map_customer
from ct_insider.sync.reports import Rejection, SyncStats, validation_reasons

log = get_logger(__name__)

CUSTOMER_EXPAND = ("customerGroup",)


async def send_customer_batch(
    insider: InsiderClient,
    records: list[dict[str, Any]],
    config: MappingConfig,
    *,
    skip_hook: bool,
) -> SyncStats:
    """Map and upsert one batch; every record ends up counted as sent or rejected."""
    stats = SyncStats(processed=len(records))
    users: list[User] = []
    sources: list[str] = []
    for raw in records:
        record_id = str(raw.get("id", "?"))
        try:
            customer = Customer.model_validate(raw)
        except ValidationError as exc:
            reasons = validation_reasons(exc)
            stats.reject(Rejection(record_id=record_id, stage="mapping", reasons=reasons))
            log.warning("customer rejected", customer_id=record_id, reasons=reasons)
            continue
        mapped = map_customer(customer, config)
        if mapped.warnings:
            stats.warnings += len(mapped.warnings)
            log.warning("customer values dropped", customer_id=record_id, warnings=mapped.warnings)
        if mapped.user is None:
            reason = mapped.rejection or "not mappable"
            stats.reject(Rejection(record_id=record_id, stage="mapping", reasons=[reason]))
            log.warning("customer rejected", customer_id=record_id, reasons=[reason])
            continue
        users.append(mapped.user)
        sources.append(record_id)
    if users:
        result = await insider.upsert_users(users, skip_hook=skip_hook)
        for failure in result.failures:
            record_id = sources[failure.index]
            stats.reject(Rejection(record_id=record_id, stage="insider", reasons=failure.reasons))
            log.warning(
                "customer refused by Insider", customer_id=record_id, reasons=failure.reasons
            )
        stats.sent += len(users) - len(result.failures)
    return stats
