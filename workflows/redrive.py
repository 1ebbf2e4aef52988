"""RedriveWorkflow: `ct-insider dlq retry` for sync dead letters, visible in the Temporal UI.

The CLI starts it with the letters' keys and waits for the result; the worker does the
reading and sending, a hundred letters per activity so a large re-drive makes progress
that survives a crash.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.errors import NON_RETRYABLE_TYPES
    from activities.redrive import HEARTBEAT_EVERY_SECONDS, RedriveActivities, RedriveBatch
    from ct_insider.search_attributes import Outcome, outcome_update, run_updates
    from ct_insider.sync.redrive import RedriveResult

LETTERS_PER_ACTIVITY = 100
# A batch whose worker died is tried again once no heartbeat came for this long (without
# it, only after the 10-minute start-to-close timeout: `make reliability` found a re-drive
# stalled that long by one killed worker). Timeouts are not part of the commands a replay
# compares, so running re-drives take it on their next batch.
HEARTBEAT_TIMEOUT = timedelta(seconds=6 * HEARTBEAT_EVERY_SECONDS)


class RedriveInput(BaseModel):
    keys: list[str] = Field(min_length=1)
    # For the search attributes: the letters' entity when they share one, and the
    # customer when the re-drive is about a single customer.
    entity: str | None = None
    customer_id: str | None = None


def redrive_workflow_id(stamp: str, keys: list[str]) -> str:
    """Readable and unique per re-drive: when it was asked for, and what."""
    what = keys[0][:12] if len(keys) == 1 else f"{len(keys)}-letters"
    return f"redrive-{stamp}-{what}"


@workflow.defn
class RedriveWorkflow:
    def __init__(self) -> None:
        self._result = RedriveResult()

    @workflow.run
    async def run(self, params: RedriveInput) -> RedriveResult:
        workflow.upsert_search_attributes(run_updates("redrive", params.entity, params.customer_id))
        try:
            for start in range(0, len(params.keys), LETTERS_PER_ACTIVITY):
                batch = RedriveBatch(keys=params.keys[start : start + LETTERS_PER_ACTIVITY])
                self._result.add(
                    await workflow.execute_activity_method(
                        RedriveActivities.redrive_letters,
                        batch,
                        start_to_close_timeout=timedelta(minutes=10),
                        heartbeat_timeout=HEARTBEAT_TIMEOUT,
                        retry_policy=RetryPolicy(
                            initial_interval=timedelta(seconds=1),
                            maximum_interval=timedelta(minutes=1),
                            maximum_attempts=10,
                            non_retryable_error_types=NON_RETRYABLE_TYPES,
                        ),
                    )
                )
                workflow.set_current_details(self._details())
        except Exception:
            workflow.upsert_search_attributes(outcome_update("failed"))
            raise
        outcome: Outcome = "rejections" if self._result.refused else "completed"
        workflow.upsert_search_attributes(outcome_update(outcome))
        return self._result

    def _details(self) -> str:
        result = self._result
        return (
            f"**dead-letter re-drive**\n\ndelivered {len(result.delivered)}, refused again "
            f"{len(result.refused)}, record gone {len(result.gone)}, "
            f"missing {len(result.missing)}"
        )

    @workflow.query
    def result(self) -> RedriveResult:
        return self._result
