"""Reading from a shard's history (newest first) whether a task that delivered was cut
short, and when it had started."""

from __future__ import annotations

from collections.abc import Iterator

from temporalio.api.enums.v1 import EventType, TimeoutType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import (
    HistoryEvent,
    WorkflowTaskFailedEventAttributes,
    WorkflowTaskTimedOutEventAttributes,
)

from activities.interruption import Verdict, cut_short


def _event(event_type: EventType.ValueType, event_id: int = 0) -> HistoryEvent:
    return HistoryEvent(event_type=event_type, event_id=event_id)


def _timed_out(timeout_type: TimeoutType.ValueType, started: int = 0) -> HistoryEvent:
    return HistoryEvent(
        event_type=EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
        workflow_task_timed_out_event_attributes=WorkflowTaskTimedOutEventAttributes(
            timeout_type=timeout_type, started_event_id=started
        ),
    )


def _failed(
    started: int,
    cause: WorkflowTaskFailedCause.ValueType = (
        WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE
    ),
) -> HistoryEvent:
    return HistoryEvent(
        event_type=EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
        workflow_task_failed_event_attributes=WorkflowTaskFailedEventAttributes(
            started_event_id=started, cause=cause
        ),
    )


SCHEDULED = _event(EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED)
STARTED = _event(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)
COMPLETED = _event(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
SIGNALED = _event(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
ACTIVITY_COMPLETED = _event(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)


def test_a_completed_last_task_is_not_cut_short() -> None:
    # Given a history whose newest workflow task completed (signals came after it)
    newest_first = [SCHEDULED, SIGNALED, SIGNALED, COMPLETED, STARTED, SCHEDULED]
    # When it is read
    verdict = cut_short(newest_first, Verdict())
    # Then nothing was cut short
    assert (verdict.decided, verdict.cut_short_at) == (True, 0)


def test_a_start_to_close_timeout_after_the_last_completed_task_is_a_cut_from_its_start() -> None:
    # Given a task that started (event 40) after the last completed one and timed out
    newest_first = [
        SCHEDULED,
        _timed_out(TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE, started=40),
        STARTED,
        SCHEDULED,
        ACTIVITY_COMPLETED,
        COMPLETED,
        STARTED,
    ]
    # When it is read
    verdict = cut_short(newest_first, Verdict())
    # Then it was cut short, and what the shard had accepted by event 40 may have been sent
    assert (verdict.decided, verdict.cut_short_at) == (True, 40)


def test_a_schedule_to_start_timeout_is_not_a_cut() -> None:
    # Given a task that timed out before any worker picked it up (sticky queue expiry)
    newest_first = [
        STARTED,
        SCHEDULED,
        _timed_out(TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START),
        SCHEDULED,
        COMPLETED,
        STARTED,
    ]
    # When it is read
    verdict = cut_short(newest_first, Verdict())
    # Then the reading goes on to the completed task: nothing was cut short
    assert (verdict.decided, verdict.cut_short_at) == (True, 0)


def test_failed_tasks_after_the_last_completed_one_count_from_the_latest_start() -> None:
    # Given two tasks whose completions Temporal refused (started at 30, then at 36)
    newest_first = [SCHEDULED, _failed(36), STARTED, SCHEDULED, _failed(30), COMPLETED]
    # When it is read
    verdict = cut_short(newest_first, Verdict())
    # Then everything accepted by the latest of them is suspect
    assert (verdict.decided, verdict.cut_short_at) == (True, 36)


def test_a_continue_as_new_refused_for_a_signal_that_arrived_is_not_a_cut() -> None:
    # Given a task whose continue-as-new Temporal refused because a signal arrived meanwhile
    # (such a task runs no delivery), after a task that died
    refused = _failed(40, WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND)
    newest_first = [SCHEDULED, refused, STARTED, SIGNALED, COMPLETED]
    # When it is read, Then nothing was cut short
    assert cut_short(newest_first, Verdict()).cut_short_at == 0
    # And a task that died before the refused one still counts
    with_cut = [SCHEDULED, refused, STARTED, SCHEDULED, _failed(30), COMPLETED]
    assert cut_short(with_cut, Verdict()).cut_short_at == 30


def test_a_cut_before_the_last_completed_task_does_not_count() -> None:
    # Given an old failure, followed by a task that completed
    newest_first = [
        COMPLETED,
        STARTED,
        SCHEDULED,
        _timed_out(TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE, started=12),
        _failed(9),
    ]
    # When it is read
    verdict = cut_short(newest_first, Verdict())
    # Then it is settled by the newest completed task
    assert (verdict.decided, verdict.cut_short_at) == (True, 0)


def test_a_cut_in_the_first_task_of_a_run_is_found_across_pages() -> None:
    # Given a run whose first task died, read in two pages that hold no completed task
    verdict = cut_short([SCHEDULED, SIGNALED], Verdict())
    assert not verdict.decided
    verdict = cut_short(
        [_timed_out(TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE, started=3), STARTED], verdict
    )
    # Then the verdict carries over the pages: undecided (the run's start), cut at event 3
    assert (verdict.decided, verdict.cut_short_at) == (False, 3)


def test_reading_stops_at_the_answer() -> None:
    # Given events of which only the first two are needed
    consumed: list[HistoryEvent] = []

    def newest_first() -> Iterator[HistoryEvent]:
        for event in (SCHEDULED, COMPLETED, _failed(5)):
            consumed.append(event)
            yield event

    # When they are read
    verdict = cut_short(newest_first(), Verdict())
    # Then reading stopped at the completed task (an older failure is not looked at)
    assert verdict.cut_short_at == 0
    assert consumed == [SCHEDULED, COMPLETED]


def test_a_task_completed_after_the_point_asked_about_does_not_hide_a_cut_before_it() -> None:
    # Given a task that started at event 40 and timed out, and the rebuilt shard's tasks
    # after it: one started at event 44 and completed, and a later one
    newest_first = [
        _event(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, 48),
        _event(EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, 47),
        _event(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, 45),
        _event(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, 44),
        _event(EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, 43),
        HistoryEvent(
            event_type=EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
            event_id=42,
            workflow_task_timed_out_event_attributes=WorkflowTaskTimedOutEventAttributes(
                timeout_type=TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE, started_event_id=40
            ),
        ),
        _event(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, 40),
        _event(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, 38),
    ]
    # When it is read as of the rebuilt shard's first task (event 44), and as of now
    as_of_rebuild = cut_short(newest_first, Verdict(), as_of=44)
    as_of_now = cut_short(newest_first, Verdict())
    # Then the answer about that task stays "cut short at 40"; asked as of now, the shard's
    # own completed task would hide it
    assert (as_of_rebuild.decided, as_of_rebuild.cut_short_at) == (True, 40)
    assert (as_of_now.decided, as_of_now.cut_short_at) == (True, 0)
