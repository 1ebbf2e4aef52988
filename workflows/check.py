"""ConsistencyCheckWorkflow: compare what Insider holds with commercetools, optionally repair.

The records (a random sample, or all of them page by page) are checked in small chunks, one
activity each; the workflow adds the chunks' drift up, shows its progress as the run's
current details, and returns the drift report. A check of every record continues as new
between pages (carrying its cursor and the report so far), so its history stays small.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from activities.check import CheckActivities, CheckChunkInput, SampleInput, SamplePage
    from activities.errors import NON_RETRYABLE_TYPES
    from ct_insider.checks.drift import DriftReport
    from ct_insider.resources import CheckEntity
    from ct_insider.search_attributes import outcome_update, run_updates

# Records per check activity: at 2.5 units a read, 50 reads are an eighth of a minute's quota.
CHUNK_SIZE = 50
MAX_SAMPLE = 10_000
# Ids per page when checking every record (the most commercetools pages).
PAGE_SIZE = 500
# Chunks one run checks before it continues as new (Temporal may suggest it earlier).
MAX_CHUNKS_PER_RUN = 1_000
# Insider's retention (reference insider-api.md §6): purchase events are dropped after 730
# days, profiles 12 months after their last update. Older records are not checked by
# default: their absence in Insider is expected, not drift.
PURCHASE_RETENTION = timedelta(days=730)
PROFILE_RETENTION = timedelta(days=365)
RETENTION_NOTES: dict[str, str] = {
    "orders": "no --since given: orders placed in the last 730 days were checked (Insider "
    "drops purchase events after 730 days)",
    "customers": "no --since given: customers changed in the last 12 months were checked "
    "(Insider drops a profile 12 months after its last update); customers unchanged since "
    "but with newer orders were not checked, so nothing is reported missing that Insider "
    "may have dropped",
}
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=2),
    non_retryable_error_types=NON_RETRYABLE_TYPES,
)


class CheckInput(BaseModel):
    # Field names are a contract: schedules start this workflow by type name with them.
    entity: CheckEntity
    sample: int | None = Field(default=200, ge=1, le=MAX_SAMPLE)
    all: bool = False  # every record (paged) instead of a sample
    since: datetime | None = None  # orders placed / other records changed since
    repair: bool = False
    # Orders changed or delivered less than this long ago are not judged: delivery waits
    # `settle_grace_seconds` for Insider to show an event and a delta lane runs every few
    # minutes, so their events may be accepted and not yet readable, or still in flight.
    recent_margin_seconds: int = Field(default=15 * 60, ge=0)
    max_chunks_per_run: int = Field(default=MAX_CHUNKS_PER_RUN, ge=1)
    page_size: int = Field(default=PAGE_SIZE, ge=1, le=PAGE_SIZE)
    # Carried across continue-as-new by a check of every record: where the next page
    # starts, and the report so far.
    cursor: str | None = None
    carried: DriftReport | None = None


def check_workflow_id(params: CheckInput, now: datetime) -> str:
    """A readable id per run, unique even for checks started in the same millisecond,
    e.g. `check-customers-20260101T120000.123Z-9f2c41a07b3e`.

    48 random bits: two starts in one millisecond collide with odds of 2^-48 (16 bits,
    as before, collided once in ~1,300 pairs: a "distinct ids" test failed by chance)."""
    mode = "-repair" if params.repair else ""
    stamp = f"{now.strftime('%Y%m%dT%H%M%S')}.{now.microsecond // 1000:03d}Z"
    return f"check-{params.entity}{mode}-{stamp}-{secrets.token_hex(6)}"


def retention_floor(entity: CheckEntity, now: datetime) -> datetime | None:
    """The oldest records a check looks at when not told (None: the catalog, kept whole)."""
    if entity == "orders":
        return now - PURCHASE_RETENTION
    if entity == "customers":
        return now - PROFILE_RETENTION
    return None


@workflow.defn
class ConsistencyCheckWorkflow:
    def __init__(self) -> None:
        self._report: DriftReport | None = None

    @workflow.run
    async def run(self, params: CheckInput) -> DriftReport:
        workflow.upsert_search_attributes(run_updates("check", params.entity))
        try:
            report = await self._run(params)
        except FailureError:
            workflow.upsert_search_attributes(outcome_update("failed"))
            raise
        workflow.set_current_details(self._details(report, finished=True))
        workflow.upsert_search_attributes(
            outcome_update("drift" if report.drift_left else "completed")
        )
        return report

    async def _run(self, params: CheckInput) -> DriftReport:
        source = "fingerprint-store" if params.entity == "catalog" else "insider-profile-api"
        report = params.carried or DriftReport(entity=params.entity, source=source)
        self._report = report
        since = params.since
        if since is None:
            since = retention_floor(params.entity, workflow.now())
            if since is not None:
                report.notes.append(RETENTION_NOTES[params.entity])
        if not (params.all or params.sample is None):
            page = await self._sample(
                SampleInput(entity=params.entity, since=since, size=params.sample)
            )
            await self._check(params, page.ids, report)
            return report
        cursor, chunks = params.cursor, 0
        while True:
            page = await self._sample(
                SampleInput(
                    entity=params.entity,
                    since=since,
                    after_id=cursor,
                    page_size=params.page_size,
                )
            )
            chunks += await self._check(params, page.ids, report)
            cursor = page.cursor
            if cursor is None:
                return report
            if (
                chunks >= params.max_chunks_per_run
                or workflow.info().is_continue_as_new_suggested()
            ):
                workflow.continue_as_new(
                    params.model_copy(update={"since": since, "cursor": cursor, "carried": report})
                )

    async def _sample(self, params: SampleInput) -> SamplePage:
        return await workflow.execute_activity_method(
            CheckActivities.sample_check_records,
            params,
            start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=timedelta(minutes=1),
            retry_policy=RETRY,
        )

    async def _check(self, params: CheckInput, ids: list[str], report: DriftReport) -> int:
        """Check `ids` chunk by chunk; returns the number of chunks."""
        chunks = 0
        for start in range(0, len(ids), CHUNK_SIZE):
            too_recent_after = workflow.now() - timedelta(seconds=params.recent_margin_seconds)
            part = await workflow.execute_activity_method(
                CheckActivities.check_records,
                CheckChunkInput(
                    entity=params.entity,
                    ids=ids[start : start + CHUNK_SIZE],
                    repair=params.repair,
                    lane=workflow.info().workflow_id,
                    too_recent_after=too_recent_after,
                ),
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=RETRY,
            )
            report.merge(part)
            chunks += 1
            workflow.set_current_details(self._details(report, finished=False))
        return chunks

    @staticmethod
    def _details(report: DriftReport, *, finished: bool) -> str:
        counts = report.counts
        state = "finished" if finished else "running"
        return (
            f"{report.entity} check {state}: {report.checked} checked of {report.sampled} "
            f"sampled ({report.too_recent} too recent); missing {counts.missing}, stale "
            f"{counts.stale}, extra {counts.extra}, duplicated {counts.duplicated}; repaired "
            f"{report.repaired}; {report.units_spent} profile units"
        )

    @workflow.query
    def report(self) -> DriftReport | None:
        return self._report
