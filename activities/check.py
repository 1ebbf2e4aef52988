"""Consistency-check activities: pick the records to check, and check (and repair) a few.

Thin adapters over ct_insider/checks: a chunk is small (its profile reads fit in well under
a minute of quota), so a retried attempt costs little; it heartbeats per record compared.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from temporalio import activity

from activities.base import ConnectorActivities
from activities.errors import as_application_error
from ct_insider.checks.checker import ConsistencyChecker
from ct_insider.checks.drift import CheckEntity, DriftReport
from ct_insider.checks.sampling import page_ids, sample_ids
from ct_insider.commercetools.errors import CommercetoolsError
from ct_insider.insider.errors import InsiderError
from ct_insider.resources import CHECK_SAMPLES
from ct_insider.sync.window import Window

# The resource each check samples, from the registry (ct_insider/resources.py); which
# checker compares them is `check_records` (a unit test holds it to every check entity).
RESOURCES: dict[CheckEntity, str] = CHECK_SAMPLES


def selection(entity: CheckEntity, since: datetime | None) -> str | None:
    """The records a check looks at: orders placed since, others changed since."""
    field = "createdAt" if entity == "orders" else "lastModifiedAt"
    return Window(since=since).predicate(field) if since else None


class SampleInput(BaseModel):
    entity: CheckEntity
    since: datetime | None = None
    size: int | None = None  # a random sample of this many; None: a page of all, in order
    after_id: str | None = None
    page_size: int = 500


class SamplePage(BaseModel):
    ids: list[str]
    cursor: str | None = None  # paging all: where the next page starts (None: no more)


class CheckChunkInput(BaseModel):
    entity: CheckEntity
    ids: list[str] = Field(max_length=1_000)
    repair: bool = False
    # The workflow id: keys the in-flight marker of an order repair, names dead letters.
    lane: str
    # Orders changed or delivered after this are too recent to judge (see CheckInput).
    too_recent_after: datetime | None = None


class CheckActivities(ConnectorActivities):
    @property
    def checker(self) -> ConsistencyChecker:
        return ConsistencyChecker(
            self._ct, self._insider, self._mapping, self._orders, self._catalog
        )

    @activity.defn
    async def sample_check_records(self, params: SampleInput) -> SamplePage:
        resource = RESOURCES[params.entity]
        where = selection(params.entity, params.since)
        try:
            if params.size is not None:
                ids = await sample_ids(
                    self._ct, resource, where, params.size, on_page=activity.heartbeat
                )
                return SamplePage(ids=ids)
            ids, cursor = await page_ids(
                self._ct, resource, where, params.after_id, params.page_size
            )
        except CommercetoolsError as exc:
            raise as_application_error(exc) from exc
        return SamplePage(ids=ids, cursor=cursor)

    @activity.defn
    async def check_records(self, params: CheckChunkInput) -> DriftReport:
        def progress(done: int) -> None:
            activity.heartbeat(done)

        try:
            if params.entity == "customers":
                return await self.checker.check_customers(
                    params.ids, repair=params.repair, lane=params.lane, on_progress=progress
                )
            if params.entity == "orders":
                return await self.checker.check_orders(
                    params.ids,
                    repair=params.repair,
                    lane=params.lane,
                    too_recent_after=params.too_recent_after,
                    on_progress=progress,
                )
            return await self.checker.check_catalog(
                params.ids, repair=params.repair, lane=params.lane, on_progress=progress
            )
        except (InsiderError, CommercetoolsError) as exc:
            raise as_application_error(exc) from exc
