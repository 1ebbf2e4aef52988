"""ConsistencyCheckWorkflow: compare what Insider holds with commercetools, optionally repair.

The records (a random sample, or all of them page by page) are checked in small chunks, one
activity each; the workflow adds the chunks' drift up, shows its progress as the run's
current details, and returns the drift report.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.check import CheckActivities, CheckChunkInput, SampleInput, SamplePage
    from activities.errors import NON_RETRYABLE_TYPES
    from ct_insider.checks.drift import DriftReport
    from ct_insider.resources import CheckEntity
    from ct_insider.search_attributes import outcome_update, run_updates

# Records per check activity: at 2.5 units a read, 50 reads are an eighth of a minute's quota.
CHUNK_SIZE = 50
MAX_SAMPLE = 10_000
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


def check_workflow_id(params: CheckInput, now: datetime) -> str:
    """A readable id per run, e.g. `check-customers-20260101T120000Z`."""
    mode = "-repair" if params.repair else ""
    return f"check-{params.entity}{mode}-{now.strftime('%Y%m%dT%H%M%SZ')}"


@workflow.defn
class ConsistencyCheckWorkflow:
    def __init__(self) -> None:
        self._report: DriftReport | None = None

    @workflow.run
    async def run(self, params: CheckInput) -> DriftReport:
        workflow.upsert_search_attributes(run_updates("check", params.entity))
        source = "fingerprint-store" if params.entity == "catalog" else "insider-profile-api"
        report = DriftReport(entity=params.entity, source=source)
        self._report = report
        if params.all or params.sample is None:
            cursor: str | None = None
            while True:
                page = await self._sample(
                    SampleInput(entity=params.entity, since=params.since, after_id=cursor)
                )
                await self._check(params, page.ids, report)
                cursor = page.cursor
                if cursor is None:
                    break
        else:
            page = await self._sample(
                SampleInput(entity=params.entity, since=params.since, size=params.sample)
            )
            await self._check(params, page.ids, report)
        workflow.set_current_details(self._details(report, finished=True))
        workflow.upsert_search_attributes(
            outcome_update("drift" if report.drift_left else "completed")
        )
        return report

    async def _sample(self, params: SampleInput) -> SamplePage:
        return await workflow.execute_activity_method(
            CheckActivities.sample_check_records,
            params,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RETRY,
        )

    async def _check(self, params: CheckInput, ids: list[str], report: DriftReport) -> None:
        for start in range(0, len(ids), CHUNK_SIZE):
            part = await workflow.execute_activity_method(
                CheckActivities.check_records,
                CheckChunkInput(
                    entity=params.entity,
                    ids=ids[start : start + CHUNK_SIZE],
                    repair=params.repair,
                    lane=workflow.info().workflow_id,
                ),
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=RETRY,
            )
            report.merge(part)
            workflow.set_current_details(self._details(report, finished=False))

    @staticmethod
    def _details(report: DriftReport, *, finished: bool) -> str:
        counts = report.counts
        state = "finished" if finished else "running"
        return (
            f"{report.entity} check {state}: {report.checked} checked of {report.sampled} "
            f"sampled; missing {counts.missing}, stale {counts.stale}, extra {counts.extra}, "
            f"duplicated {counts.duplicated}; repaired {report.repaired}; "
            f"{report.units_spent} profile units"
        )

    @workflow.query
    def report(self) -> DriftReport | None:
        return self._report
