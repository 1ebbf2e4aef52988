"""Reading from a shard's history (newest first) whether its last delivery was cut short."""

from __future__ import annotations

from collections.abc import Iterator

from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.api.history.v1 import HistoryEvent, WorkflowTaskTimedOutEventAttributes

from activities.interruption import cut_short


def _event(event_type: EventType.ValueType) -> HistoryEvent:
    return HistoryEvent(event_type=event_type)


def _timed_out(timeout_type: TimeoutType.ValueType) -> HistoryEvent:
    return HistoryEvent(
        event_type=EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
        workflow_task_timed_out_event_attributes=WorkflowTaskTimedOutEventAttributes(
            timeout_type=timeout_type
        ),
    )


SCHEDULED = _event(EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED)
STARTED = _event(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)
COMPLETED = _event(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
FAILED = _event(EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED)
SIGNALED = _event(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
ACTIVITY_COMPLETED = _event(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)


def test_a_completed_last_task_is_not_cut_short() -> None:
    # Given a history whose newest workflow task completed (signals came after it)
    newest_first = [SCHEDULED, SIGNALED, SIGNALED, COMPLETED, STARTED, SCHEDULED]
    # When it is read
    answer = cut_short(newest_first)
    # Then the last delivery was not cut short
    assert answer is False


def test_a_start_to_close_timeout_after_the_last_completed_task_is_a_cut() -> None:
    # Given a task that started after the last completed one and timed out while running
    newest_first = [
        SCHEDULED,
        _timed_out(TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE),
        STARTED,
        SCHEDULED,
        ACTIVITY_COMPLETED,
        COMPLETED,
        STARTED,
    ]
    # When it is read
    answer = cut_short(newest_first)
    # Then the last delivery may have been cut short
    assert answer is True


def test_a_schedule_to_start_timeout_is_not_a_cut() -> None:
    # Given a task that timed out before any worker picked it up (sticky queue expiry),
    # after a completed one
    newest_first = [
        STARTED,
        SCHEDULED,
        _timed_out(TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START),
        SCHEDULED,
        COMPLETED,
        STARTED,
    ]
    # When it is read
    answer = cut_short(newest_first)
    # Then the reading goes on to the completed task: nothing was cut short
    assert answer is False


def test_a_failed_task_after_the_last_completed_one_is_a_cut() -> None:
    # Given a task whose completion Temporal refused
    newest_first = [SCHEDULED, FAILED, STARTED, SCHEDULED, COMPLETED, STARTED]
    # When it is read
    answer = cut_short(newest_first)
    # Then the last delivery may have been cut short
    assert answer is True


def test_a_cut_before_the_last_completed_task_does_not_count() -> None:
    # Given an old failure, followed by a task that completed
    newest_first = [
        COMPLETED,
        STARTED,
        SCHEDULED,
        _timed_out(TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE),
        FAILED,
    ]
    # When it is read
    answer = cut_short(newest_first)
    # Then it is settled by the newest completed task
    assert answer is False


def test_events_that_do_not_reach_a_completed_task_are_undecided() -> None:
    # Given a page of history with neither a completed task nor a cut
    newest_first = [
        SIGNALED,
        SCHEDULED,
        _timed_out(TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START),
        SIGNALED,
    ]
    # When it is read
    answer = cut_short(newest_first)
    # Then the answer needs an older page
    assert answer is None
    assert cut_short([]) is None


def test_reading_stops_at_the_answer() -> None:
    # Given events of which only the first two are needed
    consumed: list[HistoryEvent] = []

    def newest_first() -> Iterator[HistoryEvent]:
        for event in (SCHEDULED, COMPLETED, FAILED):
            consumed.append(event)
            yield event

    # When they are read
    answer = cut_short(newest_first())
    # Then reading stopped at the completed task (an older failure is not looked at)
    assert answer is False
    assert consumed == [SCHEDULED, COMPLETED]
