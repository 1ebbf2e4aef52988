"""ErasureWorkflow: `ct-insider erase`, one person's data out of Insider and the connector.

The workflow id names the customer, or a hash of the email (never the address itself:
ids and search attributes are shown in the Temporal UI and kept in its visibility store).
The work is one activity: its result holds masked identifiers only, so the history keeps
no more of the person than the request itself. Started by `ct-insider erase` and by the
journey delivery of a CustomerDeleted message (activities/erasure.py ErasureStarter), both
with id_conflict_policy USE_EXISTING: a repeat attaches to the running erasure.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.erasure import ErasureActivities
    from activities.errors import NON_RETRYABLE_TYPES
    from ct_insider.erasure.eraser import ErasureReport
    from ct_insider.erasure.plan import ErasureRequest
    from ct_insider.search_attributes import outcome_update, run_updates


@workflow.defn
class ErasureWorkflow:
    @workflow.run
    async def run(self, request: ErasureRequest) -> ErasureReport:
        workflow.upsert_search_attributes(run_updates("erasure", "customers", request.customer_id))
        try:
            report = await workflow.execute_activity_method(
                ErasureActivities.erase_person,
                request,
                start_to_close_timeout=timedelta(minutes=10),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    maximum_interval=timedelta(minutes=1),
                    maximum_attempts=10,
                    non_retryable_error_types=NON_RETRYABLE_TYPES,
                ),
            )
        except Exception:
            workflow.upsert_search_attributes(outcome_update("failed"))
            raise
        workflow.upsert_search_attributes(
            outcome_update("rejections" if report.failed else "completed")
        )
        workflow.set_current_details(
            f"**erasure** ({report.action}): {len(report.profiles)} Insider profile(s), "
            f"{report.dead_letters} dead letter(s); failures {len(report.failures)}, "
            f"another person's profiles left alone {len(report.skipped)}, "
            f"deletes Insider is still finishing {len(report.pending)}"
        )
        return report
