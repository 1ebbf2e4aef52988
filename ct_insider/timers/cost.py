"""What a timer workflow costs in Temporal, counted from its history: the billed actions
(a start or continue-as-new, each signal, timer and activity, local activities included:
docs temporal.md) and the history events, so tests and bench/triggers.py measure cost the
same way."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

# The marker a local activity's result is recorded in (one per activity, whatever its
# attempts; the Python SDK's core names it so).
LOCAL_ACTIVITY_MARKER = "core_local_activity"
_ACTIONS = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    EventType.EVENT_TYPE_TIMER_STARTED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
}


class HistoryCost(BaseModel):
    actions: int = 0
    events: int = 0
    timers: int = 0
    timers_cancelled: int = 0
    activities: int = 0
    signals: int = 0

    def add(self, other: HistoryCost) -> HistoryCost:
        return HistoryCost(
            **{
                name: getattr(self, name) + getattr(other, name)
                for name in HistoryCost.model_fields
            }
        )


def history_cost(events: Iterable[HistoryEvent]) -> HistoryCost:
    """One run's cost (a signal-with-start that starts the run counts as its start and one
    signal, as Temporal Cloud bills it: at most one more action than it bills)."""
    cost = HistoryCost()
    for event in events:
        cost.events += 1
        kind = event.event_type
        cost.actions += kind in _ACTIONS
        cost.timers += kind == EventType.EVENT_TYPE_TIMER_STARTED
        cost.timers_cancelled += kind == EventType.EVENT_TYPE_TIMER_CANCELED
        local = (
            kind == EventType.EVENT_TYPE_MARKER_RECORDED
            and event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER
        )
        cost.actions += local
        cost.activities += kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED or local
        cost.signals += kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    return cost
