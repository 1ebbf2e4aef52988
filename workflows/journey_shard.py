"""JourneyShardWorkflow: the realtime path for one shard of all identities.

Identities (customer, else anonymous visitor, else email) are spread over a fixed number
of shards by a stable hash; the bridge group-commits the signals of a short window into one
`deliver` signal per shard (an update while the shard gives notice that it continues-as-new).
A shard accepts each signal by the rules of ct_insider/journeys/intake.py
(duplicates, stale state, deleted customers, forgotten keys), and delivers what is pending
in batches, in order of occurrence, one local activity per batch: the activity sends one
upsert for many people, shared with the other shards of the worker.

Exactly once, without reading Insider on the steady path:
- a delivery that may have been stored (ambiguous failure) is settled by a regular
  activity that reads Insider for those users only, before anything later is sent;
- a shard rebuilt from history asks Temporal (not Insider) whether a task before was cut
  short by a dying worker; only then does it settle what that task may have sent by reading
  Insider - the verdict stays on those signals whatever becomes of the delivery that asked;
- what a task accepted in an update is sent in a later task (an update's acceptance is
  stored when its task completes; a signal is stored before any task takes it);
- continue-as-new happens in a workflow task of its own (`_end_task`), so a completion
  Temporal refuses because a signal arrived never repeats a delivery; what it
  carries is bounded by construction (CARRY_BUDGET: settings whose worst case exceeds it
  are refused, pending work beyond its share is delivered first).

Dedupe beyond the memory: each generation of keys the shard's memory lets go of is written
to the dedupe archive (commercetools custom objects, ct_insider/journeys/archive_lane.py),
kept `archive_retention_minutes`; a forgotten signal is looked up there by its delivery,
and Insider is asked only when the archive does not cover it.

Nothing the bridge acknowledged is dropped: a delivery that fails before sending is retried
with backoff; a signal that makes its batch fail every time is found by splitting the batch
and dead-lettered, as is what Insider refuses and any window the shard cannot read; no
input fails a workflow task, and the shard never fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from itertools import chain, takewhile
from typing import Any

from pydantic import (
    BaseModel,
    Field,
    TypeAdapter,
    ValidationError,
    field_serializer,
    model_validator,
)
from pydantic_core import from_json, to_json
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.journey import (
        NOT_SENT,
        DeliverInput,
        FinishInput,
        HistoryCheck,
        JourneyActivities,
        NotSent,
        SettleInput,
    )
    from ct_insider.deadletters import DeadLetterDraft
    from ct_insider.journeys import sender_clock_keys
    from ct_insider.journeys.archive_lane import (
        ArchiveLane,
        ArchiveLaneSnapshot,
        max_lane_bytes,
        max_pending_keys,
        new_lane,
    )
    from ct_insider.journeys.delivery import Bookkeeping, DeliveryStats, signal_letter
    from ct_insider.journeys.intake import Verdict, accept, mark_deleted, take_batch
    from ct_insider.journeys.layout import (
        HANDOFF_MAX_BYTES,
        HandedOff,
        HandoffPart,
        LayoutChange,
        Placement,
        ShardLayout,
        layout_workflow_id,
    )
    from ct_insider.journeys.memory import (
        DELETED_CAPACITY,
        KEY_ADDED_BYTES,
        MemorySnapshot,
        SeenKeys,
        ShardMemory,
        max_snapshot_bytes,
        memory_with,
        received_moment,
        split_handoff,
    )
    from ct_insider.journeys.plan import PlannedUser
    from ct_insider.journeys.settle import SettleProgress
    from ct_insider.journeys.signals import (
        MAX_SIGNAL_BYTES,
        JourneySignal,
        window_has_room,
        window_part,
        window_payload,
    )
    from ct_insider.sync.reports import validation_reasons

DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=3,
)
SETTLE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=60)
)
MAX_BACKOFF = timedelta(minutes=5)
# Runs started before the dedupe archive existed replay without it (it adds local activities).
ARCHIVE_PATCH = "dedupe-archive"
# A signal in this many deliveries that failed before sending because of a record of their
# batch is a suspect: its batch is halved after each such failure, and a suspect that fails
# alone is dead-lettered. Between halvings the shard pauses briefly (no dependency is down).
POISON_ATTEMPTS = 3
ISOLATION_PAUSE = timedelta(seconds=1)
DELIVER = "deliver"  # the update (or signal) that carries a window
# A shard's workflow task timeout (Temporal's default is 10 s). On a busy machine a task that
# replays a run of several MB, or takes in thousands of signals, ran past 10 s: the server
# timed it out while its delivery was in flight, the shard then held that delivery's batch in
# doubt (profile reads at Insider's 1,000 a minute), and the run stalled for minutes (bench
# skew shape at load average 5: 3 such timeouts, 1,702 users in doubt). The cost: a worker
# that dies in a task holds its shard this long before another worker takes it over.
SHARD_TASK_TIMEOUT = timedelta(seconds=20)
# Of a window that is not JSON, the dead letter keeps this much (as text).
UNREADABLE_KEPT_BYTES = 10_000
SIGNALS = TypeAdapter(list[JourneySignal])
# Handoffs, holds and forwards of a reshard (ct_insider/journeys/layout.py): a shard that
# was never told of one takes the command path it always took.
RESHARD_PATCH = "journey-reshard"
# Runs begun before it measured their dedupe memory's reach by the senders' clocks and
# carried pending signals without a bound on the whole; they finish as they began.
MEMORY_ON_OUR_CLOCK = "shard-memory-on-our-clock"
# A shard due to continue-as-new whose pending signals do not fit the carry delivers them
# at once instead of gathering a full batch: each wait let as many new signals arrive as it
# delivered, the carry kept not fitting, and the history grew past the bridge's backlog
# limit (503s). Runs without it gathered as before.
CONTINUE_UNGATHERED = "continue-without-gathering"
# Delivery batches bounded by bytes as well as by count; runs begun before replay the
# batches they made.
DELIVERY_BATCH_BYTES = "delivery-batch-bytes"
# A window that is a JSON object, not an array, is read as one signal (a run before read the
# object's keys as its signals, and failed).
WINDOW_NOT_AN_ARRAY = "window-not-an-array"
# A few deliveries per workflow task (ShardSettings.max_deliveries_per_task): a local
# activity's result is only stored when its task completes, and a shard with a backlog
# chained delivery after delivery in one task (up to 80% of its timeout, while new signals
# waited outside it). Under load such a task timed out, and every delivery in it was then in
# doubt (a profile read per user). Runs without it chain as before.
DELIVERIES_PER_TASK = "deliveries-per-task"
# Continue-as-new measures the carry it completes (JSON, against CARRY_BUDGET) instead of
# bounding pending work by pending_max_bytes beside a memory assumed full: a busy shard's
# signals that arrived while the carry was built (~180 KB of room beside the archive's lane)
# kept not fitting while its memory, a quarter full, left ~800 KB unused, and the run grew to
# 8 MB of history (bench skew shape: 1,009 requests refused). Runs without it keep the rule.
CARRY_MEASURED = "carry-measured"
# A shard's history limits are staggered by its index, as its signal limit always was; runs
# begun before continue-as-new at the settings' limits.
STAGGERED_HISTORY = "staggered-history-limits"
# A shard ends a workflow task by waiting for the next one (an update's, a signal's) or 1 ms,
# whichever comes first; runs begun before wait for the 1 ms timer (under a stream of
# updates, Temporal fired it only once the stream paused: a continue-as-new waited seconds).
NEXT_TASK = "next-task-or-timer"
# A signal goes out only in a workflow task after the one that accepted it: an update's
# acceptance is stored when its task completes, so a task that died after sending what it
# accepted would leave Insider holding events no history shows the shard took (a sender that
# posts them again later would have them sent twice). Runs begun before send at once. (Since
# SIGNALS_SENT_IN_THEIR_TASK, only what came in updates waits.)
SEND_WHAT_EARLIER_TASKS_ACCEPTED = "send-what-earlier-tasks-accepted"
# A shard due to continue-as-new gives notice first (the memo CONTINUING_MEMO, which the
# bridges read when they describe it) and continues `continue_notice_seconds` later: the
# bridges then hand it windows as updates, which a continuing run passes to the next, and
# signals otherwise (answered as soon as stored; an update only once the shard took it).
# Runs begun before continue at once.
CONTINUE_NOTICE = "continue-with-notice"
# Only what came in updates waits for a later task (SEND_WHAT_EARLIER_TASKS_ACCEPTED): a
# signal is in the history before any task takes it, so the task that took it sends it.
# Runs begun before held signals back a task too (a timer and a task more per window: the
# bridges shape's history events per event 0.13 -> 0.21).
SIGNALS_SENT_IN_THEIR_TASK = "signals-sent-in-their-task"
CONTINUING_MEMO = "continuing_as_new"
# What continue-as-new hands the next run (ShardInput, encrypted), at most. Temporal refuses
# a payload over 2 MiB (2,097,152 bytes), and the run's history starts with it (counted in
# max_history_bytes); ~25% stays free for what the bound below does not count.
CARRY_BUDGET = 1_500_000
# The carry besides memory and pending work: shard, settings, statistics (25 counters),
# JSON framing, and the codec's envelope (key id, nonce, tag).
CARRY_FIXED_BYTES = 4_096


class ShardSettings(BaseModel):
    max_batch: int = Field(default=250, ge=1)  # signals per delivery
    # ... and bytes of them (a signal is at most MAX_SIGNAL_BYTES): ~240 ordinary events, or
    # 9 cart views of 100 lines. A delivery's input is about this much; its doubtful users'
    # planned events (one per cart line) in its result ~1.8x, and a settlement's input both:
    # ~0.9 MB at worst, well under Temporal's 2 MB (tests/unit/test_bridge_admission.py).
    max_batch_bytes: int = Field(default=320_000, ge=MAX_SIGNAL_BYTES)
    # >0: after the first signal, gather this long before delivering, so deliveries that
    # arrive shuffled within the window are put back in order (costs a timer per batch).
    gather_seconds: float = Field(default=0.0, ge=0)
    # Deliveries one workflow task may chain before it ends (`_end_task`) and stores their
    # outcomes: a task lost under load leaves at most this many batches in doubt. Each end
    # costs a round trip through Temporal (batched shape side by side, 1 per task: 660 events/s
    # against 1,438/s chaining; bench/README.md).
    max_deliveries_per_task: int = Field(default=4, ge=1)
    # A failed delivery (or archive write) waits 2^n of these, n failures in a row (at most 5
    # minutes): tests make it short.
    backoff_unit_seconds: float = Field(default=1.0, gt=0, le=1.0)
    seen_capacity: int = Field(default=30_000, ge=16)  # dedupe keys remembered
    identity_capacity: int = Field(default=20_000, ge=1)
    identity_idle_seconds: float = Field(default=24 * 3600, gt=0)  # then forgotten at CAN
    # Customers whose delivered deletion is remembered (for 30 days), at most.
    deleted_capacity: int = Field(default=DELETED_CAPACITY, ge=1)
    # A run continues-as-new after about this many signals. Each continue-as-new pauses the
    # shard for a few hundred ms (the carried memory, up to ~1.2 MB, is written and read); a
    # rebuild (a restart) replays the whole run (bench/realtime.py: 3,000 signals replay in
    # 0.3 s of CPU). Each shard's threshold is offset by its index (0.75x to 1.25x), so
    # shards under even traffic do not all pause at once.
    max_run_signals: int = Field(default=6_000, ge=1)
    # And after this many `deliver` updates: Temporal takes at most 2,000 in a run.
    max_run_updates: int = Field(default=1_500, ge=1, le=1_900)
    max_history_events: int = Field(default=5_000, ge=100)
    # Notice a shard gives the bridges before it continues-as-new (CONTINUE_NOTICE): more than
    # the bridges take to see it (they describe a shard every HISTORY_CHECK_SECONDS, 2 s).
    continue_notice_seconds: float = Field(default=4.0, ge=0, le=60)
    max_history_bytes: int = Field(default=4_000_000, ge=100_000)
    # How long the dedupe archive keeps what the memory let go of (0: no archive; forgotten
    # signals are then settled by reading Insider). The dedupe horizon is this minus the
    # clock-skew allowance (2 s): see docs/design/realtime.md. At most a week.
    archive_retention_minutes: float = Field(default=60.0, ge=0, le=7 * 24 * 60)
    # Pending signals and unfinished bookkeeping carried over continue-as-new, with the dedupe
    # archive's lane (at most max_lane_bytes, ~140 KB at the default memory), at most (JSON
    # bytes; during a reshard also the signals held or to forward, and the shard's side of the
    # change); with more, the shard delivers (hands off, forwards) first. (About a full batch of 250 large
    # storefront events; what the memory leaves of CARRY_BUDGET at the default capacities.)
    # A shard tries to continue-as-new once its pending work fits this; what arrives while it
    # builds the carry may take what its memory leaves of CARRY_BUDGET (`carry-measured`).
    pending_max_bytes: int = Field(default=320_000, ge=10_000)

    def max_carry_bytes(self) -> int:
        """The most continue-as-new can hand the next run with these settings."""
        return (
            max_snapshot_bytes(self.seen_capacity, self.identity_capacity, self.deleted_capacity)
            + self.pending_max_bytes
            + CARRY_FIXED_BYTES
        )

    @model_validator(mode="after")
    def _carry_within_budget(self) -> ShardSettings:
        worst = self.max_carry_bytes()
        if worst > CARRY_BUDGET:
            raise ValueError(
                f"a shard with these capacities may carry {worst:,} bytes over "
                f"continue-as-new, beyond its budget of {CARRY_BUDGET:,} (Temporal refuses "
                "payloads over 2 MiB): lower seen_capacity, identity_capacity, "
                "deleted_capacity or pending_max_bytes"
            )
        lane = max_lane_bytes(self.seen_capacity) if self.archive_retention_minutes else 0
        if self.pending_max_bytes < lane + MAX_SIGNAL_BYTES:
            raise ValueError(
                f"pending_max_bytes ({self.pending_max_bytes:,}) leaves no room for a pending "
                f"signal beside the dedupe archive's lane (up to {lane:,} bytes with this "
                "seen_capacity): raise it, or set archive_retention_minutes to 0"
            )
        return self


class ShardStats(BaseModel):
    received: int = 0
    duplicates: int = 0
    archived_duplicates: int = 0  # ... of them recognised by the dedupe archive
    stale: int = 0
    after_deletion: int = 0
    delivered: int = 0  # signals through a delivery
    events: int = 0  # events Insider acknowledged
    profiles: int = 0
    deleted: int = 0
    dead_lettered: int = 0
    nothing_to_send: int = 0
    in_doubt: int = 0  # users settled by reading Insider
    found_in_insider: int = 0
    resent: int = 0
    profile_reads: int = 0
    deliveries: int = 0
    failed_deliveries: int = 0  # failed before sending; retried
    rebuild_checks: int = 0  # live deliveries that asked Temporal after a rebuild
    cut_short: int = 0  # ... and found the delivery before cut short
    runs: int = 1
    # Reshards: signals held until their old shard handed off, signals of moved identities
    # sent on to their new shard, handoff parts sent and taken.
    held: int = 0
    forwarded: int = 0
    handoff_parts_sent: int = 0
    handoff_parts_received: int = 0
    archived_objects: int = 0  # generations written to the dedupe archive

    def count(self, verdict: Verdict) -> None:
        self.received += 1
        if verdict is Verdict.DUPLICATE:
            self.duplicates += 1
        elif verdict is Verdict.STALE:
            self.stale += 1
        elif verdict is Verdict.DELETED:
            self.after_deletion += 1

    def add_delivery(self, stats: DeliveryStats) -> None:
        self.events += stats.events
        self.profiles += stats.profiles
        self.deleted += stats.deleted
        self.dead_lettered += stats.dead_lettered
        self.nothing_to_send += stats.nothing_to_send
        self.in_doubt += stats.in_doubt

    def add_settlement(self, progress: SettleProgress) -> None:
        self.found_in_insider += progress.found
        self.resent += progress.resent
        self.events += progress.resent
        self.profile_reads += progress.profile_reads
        self.dead_lettered += progress.dead_lettered


class ShardCarry(BaseModel):
    """What one run hands the next at continue-as-new."""

    memory: MemorySnapshot = Field(default_factory=MemorySnapshot)
    pending: list[JourneySignal] = Field(default_factory=list)
    unfinished: list[Bookkeeping] = Field(default_factory=list)
    stats: ShardStats = Field(default_factory=ShardStats)
    layout: ShardLayout = Field(default_factory=ShardLayout)
    held: list[JourneySignal] = Field(default_factory=list)
    forwards: list[JourneySignal] = Field(default_factory=list)
    archive: ArchiveLaneSnapshot | None = None

    @field_serializer("pending", "held", "forwards")
    def _compact(self, signals: list[JourneySignal]) -> list[dict[str, Any]]:
        # Fields at their defaults left out, as the bridge's windows carry signals: about
        # half the bytes of a storefront event, so the carry holds twice as many.
        return [carried_signal(signal) for signal in signals]


def carried_signal(signal: JourneySignal) -> dict[str, Any]:
    """A signal as the carry holds it (and measures it)."""
    return signal.model_dump(mode="json", exclude_defaults=True)


class ShardInput(BaseModel):
    shard: int = Field(ge=0)
    settings: ShardSettings = Field(default_factory=ShardSettings)
    carried: ShardCarry | None = None


def fits_carry(
    work: Iterable[JourneySignal | Bookkeeping], room: int, *, compact: bool = True
) -> bool:
    """Whether pending work takes at most `room` bytes of the carry (as JSON, as the
    payload converter writes it). `compact=False`: signals measured whole, as runs begun
    before `carry-measured` measured them (their decisions replay as they were taken)."""
    for item in work:
        if compact and isinstance(item, JourneySignal):
            room -= len(to_json(carried_signal(item)))
        else:
            room -= len(to_json(item))
        if room < 0:
            return False
    return True


def within_carry_budget(carry: ShardCarry) -> bool:
    """Whether continue-as-new may hand `carry` over: its JSON, with what the input holds
    besides (shard, settings, the codec's envelope), within CARRY_BUDGET."""
    return len(to_json(carry)) + CARRY_FIXED_BYTES <= CARRY_BUDGET


def _not_sent(failure: BaseException) -> NotSent | None:
    """What a failed delivery that stopped before sending anything reported (see
    activities/journey); None: it failed otherwise, and may have sent."""
    while failure is not None:
        if isinstance(failure, ApplicationError) and failure.type == NOT_SENT:
            # Without details (a worker before they were reported): a dependency was down.
            return NotSent.model_validate(failure.details[0]) if failure.details else NotSent()
        failure = failure.__cause__  # type: ignore[assignment]
    return None


def _kept_text(data: bytes) -> str:
    """What a dead letter keeps of a payload that is not JSON."""
    return data[:UNREADABLE_KEPT_BYTES].decode(errors="replace")


def settle_input(lane: str, batch: list[JourneySignal], users: list[PlannedUser]) -> SettleInput:
    """Only the signals the doubtful users came from travel to the settlement (its input is
    recorded in history), renumbered."""
    used = sorted({s for user in users for s in user.signals})
    position = {old: new for new, old in enumerate(used)}
    renumbered = [
        user.model_copy(
            update={
                "signals": [position[s] for s in user.signals],
                "events": [
                    e.model_copy(update={"signal": position[e.signal]}) for e in user.events
                ],
            }
        )
        for user in users
    ]
    return SettleInput(lane=lane, signals=[batch[i] for i in used], users=renumbered)


def _windows(signals: list[JourneySignal]) -> list[Payload]:
    """Signals as windows the `deliver` signal reads, within a window's bounds."""
    windows: list[list[bytes]] = []
    size = 0
    for signal in signals:
        part = window_part(signal)
        if not windows or not window_has_room(len(windows[-1]), size, part):
            windows.append([])
            size = 0
        windows[-1].append(part)
        size += len(part)
    return [window_payload(parts) for parts in windows]


def shard_workflow_id(task_queue: str, shard: int) -> str:
    """Named after the journey task queue, so deployments sharing a namespace (or tests
    sharing a server) keep their shards apart."""
    return f"{task_queue}-shard-{shard:03d}"


@workflow.defn
class JourneyShardWorkflow:
    @workflow.init
    def __init__(self, params: ShardInput) -> None:
        carried = params.carried or ShardCarry()
        settings = self._settings = params.settings
        # A run begun before the patch keeps the dedupe memory and carry rule it began with.
        self._on_our_clock = workflow.patched(MEMORY_ON_OUR_CLOCK)
        self._carry_measured = self._on_our_clock and workflow.patched(CARRY_MEASURED)
        # A run begun before windows came as updates refuses them (the bridge then signals):
        # it would send what it accepted in the task that accepted it.
        self._takes_updates = workflow.patched(SEND_WHAT_EARLIER_TASKS_ACCEPTED)
        self._signals_wait = not workflow.patched(SIGNALS_SENT_IN_THEIR_TASK)
        self._memory = ShardMemory(
            seen_capacity=settings.seen_capacity,
            identity_capacity=settings.identity_capacity,
            deleted_capacity=settings.deleted_capacity,
            snapshot=carried.memory,
            now=workflow.now(),
            seen=None
            if self._on_our_clock
            else sender_clock_keys.SenderClockSeenKeys(settings.seen_capacity, carried.memory),
        )
        self._pending: list[JourneySignal] = list(carried.pending)
        self._unfinished: list[Bookkeeping] = list(carried.unfinished)
        self._stats = carried.stats
        self._shard = params.shard
        self._layout = carried.layout
        # Signals of identities moving here, until their old shard handed off (in arrival
        # order); signals of identities moved away, accepted here, for their new shard.
        self._held: list[JourneySignal] = list(carried.held)
        self._forwards: list[JourneySignal] = list(carried.forwards)
        # The timer that wakes the shard at its handoff moment (kept: a task nobody holds
        # may be collected), and the moment it was set for.
        self._handoff_timer: asyncio.Future[None] | None = None
        self._handoff_timer_at: datetime | None = None
        # A handoff merged while continuing-as-new: the carried memory is built again.
        self._rebuild_carry = False
        self._failures = 0
        self._batch_limit = params.settings.max_batch  # smaller while isolating a poison
        self._archive = self._archive_lane(params.settings, carried.archive)
        self._archive_failures = 0
        self._archive_resumes = workflow.now()
        self._run_signals = 0
        self._run_updates = 0
        # Intake keys (with their dates and when they were received) accepted since the
        # carried state was built (while continuing-as-new).
        self._since_carry: list[tuple[str, datetime, datetime]] | None = None
        offset = (params.shard * 0.618) % 1.0
        spread = 0.75 + 0.5 * offset
        self._max_run_signals = max(1, int(params.settings.max_run_signals * spread))
        # The history limits are staggered too (75-100% of the settings, never above): shards
        # under even traffic reached 4 MB together and continued-as-new at the same moment,
        # each pause adding to the others' (bench bridges shape, p99 by tenth 3-6 s there).
        history_spread = 0.75 + 0.25 * offset if workflow.patched(STAGGERED_HISTORY) else 1.0
        self._max_history_events = int(params.settings.max_history_events * history_spread)
        self._max_history_bytes = int(params.settings.max_history_bytes * history_spread)
        # Every run starts by asking Temporal whether a task that delivered was cut short (a
        # rebuilt run, or a first task that died: that one is not even a replay), and asks
        # until a delivery that ran now got the answer.
        self._check_interruption = True
        # The history length of the first task this activation ran now (not replayed): a task
        # before it that died may have sent any signal the shard had accepted by then - its
        # own signals included, since they are the ones that task held, and more.
        self._rebuilt_at = 0
        self._rolling = False  # asked to continue-as-new (`roll`)
        self._notice_given_at: datetime | None = None  # of continuing-as-new (CONTINUE_NOTICE)
        # The history length in the task whose delivery ended last (-1: none yet), and how
        # many deliveries ended in that task.
        self._delivered_in_task = -1
        self._deliveries_in_task = 0

    def _archive_lane(
        self, settings: ShardSettings, carried: ArchiveLaneSnapshot | None
    ) -> ArchiveLane | None:
        """The dedupe archive's lane, in runs on our clock (a run begun before the memory
        patch keeps everything as it was)."""
        if (
            not settings.archive_retention_minutes
            or not self._on_our_clock
            or not workflow.patched(ARCHIVE_PATCH)
        ):
            return None
        seen = self._memory.seen
        assert isinstance(seen, SeenKeys)  # (on our clock)
        snapshot = carried or new_lane(workflow.uuid4().hex[:16], workflow.now())
        lane = ArchiveLane(
            snapshot,
            shard=workflow.info().workflow_id,
            retention=timedelta(minutes=settings.archive_retention_minutes),
            max_pending_keys=max_pending_keys(settings.seen_capacity),
        )
        seen.on_drop = lane.queue
        return lane

    @workflow.signal(dynamic=True)
    def deliver(self, name: str, windows: Sequence[RawValue]) -> None:
        """Signal `deliver`: a window of the bridge's group commit, a JSON array of journey
        signals. What the shard cannot take is dead-lettered with the reason: no input may
        fail the workflow task (it would fail again on every retry, and the shard would
        stop) - hence a dynamic handler, which no signal name or argument count can fail."""
        self._note_rebuild()
        for window in windows:
            if name == DELIVER:
                self._accept(window.payload.data, by_update=False)
            else:
                reason = f"signal {name!r} is not one a journey shard takes"
                self._unreadable(_kept_text(window.payload.data), [reason])

    @workflow.update(name=DELIVER)
    def deliver_window(self, window: RawValue) -> None:
        """Update `deliver`: a window of the bridge's group commit, as the signal carries one.
        The bridge hands windows over this way while the shard gives notice that it
        continues-as-new (CONTINUE_NOTICE): an update that arrives while the shard continues
        moves to the next run, where a signal fails that task and the worker replays the
        whole run (seconds: docs/design/realtime.md). Accepted once
        taken into the shard; like the signal, it never fails (what the shard cannot take is
        dead-lettered)."""
        self._note_rebuild()
        self._run_updates += 1
        self._accept(window.payload.data, by_update=True)

    @deliver_window.validator
    def _takes_windows(self, window: RawValue) -> None:
        if not self._takes_updates:
            raise ApplicationError("this run began before windows came as updates: signal it")

    def _accept(self, window: bytes, *, by_update: bool) -> None:
        now = workflow.now()
        task = workflow.info().get_current_history_length()
        for signal in self._read(window):
            self._run_signals += 1
            self._take(signal, now, task, by_update=by_update)

    def _take(
        self, signal: JourneySignal, now: datetime, task: int, *, by_update: bool = False
    ) -> None:
        try:
            placement, _ = self._layout.place(self._shard, signal.routing())
            if placement is Placement.HOLD:
                self._stats.held += 1
                self._held.append(signal)
                return
            verdict = accept(self._memory, signal, now)
        except Exception as exc:  # e.g. a signal that names nobody to deliver it to
            self._stats.received += 1
            self._dead_letter(signal, [f"not accepted: {type(exc).__name__}: {exc}"])
            return
        self._stats.count(verdict)
        if verdict is Verdict.ACCEPTED:
            if placement is Placement.FORWARD:
                self._stats.forwarded += 1
                self._forwards.append(signal)
            else:
                signal.accepted_in = task
                signal.accepted_by_update = by_update
                self._pending.append(signal)
            if self._since_carry is not None:
                received = received_moment(signal.received_at, now)
                self._since_carry.append((signal.intake_key(), signal.occurred_at, received))
        elif verdict is not Verdict.DUPLICATE:
            self._drop_letter(signal)

    @workflow.signal
    def roll(self) -> None:
        """Continue-as-new at the next moment the carry fits (`ct-insider roll`): a run
        keeps the rules it began with until then (`workflow.patched`), and a quiet shard may
        take days to continue by itself."""
        self._rolling = True

    @workflow.signal
    def relayout(self, change: LayoutChange) -> None:
        """A reshard announced by JourneyLayoutWorkflow (before it takes effect)."""
        self._note_rebuild()
        if self._layout.learn(change, self._shard):
            self._release_held()

    @workflow.signal
    def handoff(self, part: HandoffPart) -> None:
        """A part of an old shard's memory: once all of its parts are in, the signals held
        for the identities it owned are accepted against the merged memory."""
        self._note_rebuild()
        self._layout.learn(part.change, self._shard)
        if not self._layout.receive(part):
            return  # sent again, or of another reshard
        self._memory.inherit(part.memory, workflow.now())
        self._stats.handoff_parts_received += 1
        if self._since_carry is not None:
            self._rebuild_carry = True
        self._release_held()

    def _release_held(self) -> None:
        held, self._held = self._held, []
        now = workflow.now()
        task = workflow.info().get_current_history_length()
        for signal in held:
            self._take(signal, now, task)

    def _note_rebuild(self) -> None:
        if not self._rebuilt_at and not workflow.unsafe.is_replaying():
            self._rebuilt_at = workflow.info().get_current_history_length()

    def _read(self, data: bytes) -> list[JourneySignal]:
        """The window's signals. One the worker cannot read (a newer bridge during a rolling
        deploy) is dead-lettered with its reason: the rest of the window goes on (the SDK
        would drop a whole signal it cannot decode). A window that is not JSON is one letter;
        one that is not an array is read as one signal."""
        try:
            return SIGNALS.validate_json(data)
        except ValidationError:
            pass
        try:
            window = from_json(data)  # (json.loads would raise RecursionError too)
        except ValueError as exc:
            reason = f"window is not JSON ({len(data)} bytes): {exc}"
            self._unreadable(_kept_text(data), [reason])
            return []
        if not isinstance(window, list) and workflow.patched(WINDOW_NOT_AN_ARRAY):
            window = [window]
        readable = []
        for raw in window:
            try:
                readable.append(JourneySignal.model_validate(raw))
            except ValidationError as exc:
                self._unreadable(raw, validation_reasons(exc))
        return readable

    def _unreadable(self, raw: Any, reasons: list[str]) -> None:
        self._stats.received += 1
        self._stats.dead_lettered += 1
        if not isinstance(raw, dict):
            raw = {"value": raw}
        letter = DeadLetterDraft(
            entity="journey-signal",
            record_id=str(raw.get("dedupe_key") or "unknown"),
            reasons=[f"unreadable signal: {reason}" for reason in reasons],
            run=workflow.info().workflow_id,
            redrive={"signal": raw},
        )
        self._unfinished.append(Bookkeeping(letters=[letter]))

    def _dead_letter(self, signal: JourneySignal, reasons: list[str]) -> None:
        workflow.logger.warning("journey signal dead-lettered: %s", reasons)
        self._stats.dead_lettered += 1
        letter = signal_letter(workflow.info().workflow_id, signal, reasons)
        self._unfinished.append(Bookkeeping(letters=[letter]))

    def _drop_letter(self, signal: JourneySignal) -> None:
        """A re-driven signal with nothing left to deliver (stale, or its customer deleted
        since) leaves the dead-letter store."""
        if signal.redrive_of:
            self._unfinished.append(Bookkeeping(redriven=[signal.redrive_of]))

    @workflow.query
    def stats(self) -> ShardStats:
        return self._stats

    @workflow.query
    def pending(self) -> int:
        return len(self._pending)

    @workflow.query
    def archive_covers_from(self) -> int | None:
        """Unix ms (our clock) since when every key the memory let go of is in the dedupe
        archive (None: no archive, or a write pending)."""
        return None if self._archive is None else self._archive.covers_from()

    @workflow.run
    async def run(self, params: ShardInput) -> ShardStats:
        settings = params.settings
        while True:
            resharding = self._resharding()
            if not resharding:
                await self._wait_for_work()
                resharding = self._resharding()  # (woken by a reshard's announcement?)
            if resharding:
                await self._wait_for_work_or_handoff()
            self._note_rebuild()
            if self._unfinished:
                # Ledger entries first: a purchase delivered but not yet recorded must not
                # look undelivered to the next batch.
                await self._finish_bookkeeping()
                continue
            if resharding and self._forwards:
                await self._forward()
                continue
            if resharding and self._handoff_ready():
                await self._hand_off()
                continue
            if self._pending:
                if settings.gather_seconds and not self._continue_waits_for_delivery():
                    with contextlib.suppress(TimeoutError):
                        await workflow.wait_condition(
                            lambda: len(self._pending) >= settings.max_batch,
                            timeout=timedelta(seconds=settings.gather_seconds),
                        )
                await self._keep_archive()
                await self._end_task_after_a_delivery()
                await self._deliver_batch()
            if self._time_to_continue():
                # The carried state is built now, so that the task that continues-as-new is
                # short (Temporal refuses its completion if a signal arrives meanwhile, and
                # the shard then replays its run); and that task is one of its own, so such a
                # refusal never repeats a delivery.
                carry = self._carry()
                await self._end_task()
                await workflow.wait_condition(workflow.all_handlers_finished)
                completed = self._complete(carry)
                if completed is not None:
                    workflow.continue_as_new(
                        ShardInput(shard=params.shard, settings=settings, carried=completed),
                        task_timeout=SHARD_TASK_TIMEOUT,
                        # (by default the next run would take this run's memo, notice and all)
                        memo=None if self._notice_given_at is None else {CONTINUING_MEMO: False},
                    )

    async def _wait_for_work(self) -> None:
        """Until there is something to deliver, finish or reshard, or it is time to continue
        as new (a `roll`, or the notice given has run out)."""
        notice_left = self._notice_left()
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: bool(
                    self._pending
                    or self._unfinished
                    or self._layout.change
                    or (self._rolling and notice_left is None)
                ),
                timeout=notice_left,
            )

    def _time_to_continue(self) -> bool:
        return self._grown() and self._noticed() and self._carryable()

    def _noticed(self) -> bool:
        """Whether the bridges have had notice that this run continues-as-new, giving it the
        first time (CONTINUE_NOTICE). A run that took its most updates needs none: the
        bridges already hand it windows as updates."""
        if self._run_updates >= self._settings.max_run_updates or not workflow.patched(
            CONTINUE_NOTICE
        ):
            return True
        if self._notice_given_at is None:
            workflow.upsert_memo({CONTINUING_MEMO: True})
            self._notice_given_at = workflow.now()
        return self._notice_left() is None

    def _notice_left(self) -> timedelta | None:
        """How long the notice given has yet to run (None: none given, or it ran out)."""
        if self._notice_given_at is None:
            return None
        notice = timedelta(seconds=self._settings.continue_notice_seconds)
        left = self._notice_given_at + notice - workflow.now()
        return left if left > timedelta(0) else None

    def _grown(self) -> bool:
        info = workflow.info()
        return (
            self._rolling
            or self._run_signals >= self._max_run_signals
            or self._run_updates >= self._settings.max_run_updates
            or info.get_current_history_length() >= self._max_history_events
            or info.get_current_history_size() >= self._max_history_bytes
            or info.is_continue_as_new_suggested()
        )

    def _continue_waits_for_delivery(self) -> bool:
        """Whether the run is due to continue-as-new: what is pending then goes without
        gathering a batch, so that what remains fits the carry."""
        return self._grown() and workflow.patched(CONTINUE_UNGATHERED)

    def _carryable(self, keys_since_carry: int = 0) -> bool:
        """Whether pending work fits the carry beside the archive's lane: the memory is
        bounded by its capacities; pending work, what a reshard adds to the carry (signals
        held for a handoff or to forward, the shard's side of the change) and the archive's
        lane, by pending_max_bytes. (Since `carry-measured` this only decides when to try:
        what arrives while the carry is built may take what the memory leaves.)"""
        work: Iterable[JourneySignal | Bookkeeping] = chain(
            self._unfinished, self._pending, self._held, self._forwards
        )
        if not self._on_our_clock:
            return sender_clock_keys.carryable([*self._pending, *self._held, *self._forwards])
        room = self._settings.pending_max_bytes - keys_since_carry * KEY_ADDED_BYTES
        if self._layout.change is not None:  # (without one, it is in CARRY_FIXED_BYTES)
            room -= len(to_json(self._layout))
        if self._archive is not None:
            room -= self._archive.carried_bytes()
        return fits_carry(work, room, compact=self._carry_measured)

    def _carry(self) -> ShardCarry:
        idle = timedelta(seconds=self._settings.identity_idle_seconds)
        self._since_carry = []
        self._rebuild_carry = False
        return ShardCarry(memory=self._memory.snapshot(workflow.now() - idle, workflow.now()))

    def _complete(self, carry: ShardCarry) -> ShardCarry | None:
        """What changed since the carry was built: signals accepted meanwhile (their keys
        join the memory), pending work, statistics; None when what arrived meanwhile does
        not fit (the shard delivers first)."""
        since_carry, self._since_carry = self._since_carry or [], None
        measured = self._carry_measured
        if self._on_our_clock and not measured and not self._carryable(len(since_carry)):
            return None
        memory = carry.memory
        if self._rebuild_carry:
            # A handoff merged meanwhile: the memory is snapshotted again (still within its
            # capacities), with every key accepted since.
            memory = self._carry().memory
            self._since_carry = None
        elif since_carry:
            memory = memory_with(memory, since_carry)
        completed = ShardCarry(
            memory=memory,
            pending=self._pending,
            unfinished=self._unfinished,
            stats=self._stats.model_copy(update={"runs": self._stats.runs + 1}),
            layout=self._layout,
            held=self._held,
            forwards=self._forwards,
            archive=self._archive.snapshot() if self._archive is not None else None,
        )
        if measured and not within_carry_budget(completed):
            return None
        for signal in self._pending:
            signal.accepted_in = 0  # before any task of the next run (fewer digits than measured)
            signal.accepted_by_update = False
        return completed

    def _resharding(self) -> bool:
        return self._layout.change is not None and workflow.patched(RESHARD_PATCH)

    async def _wait_for_work_or_handoff(self) -> None:
        """As without a reshard, and also for signals to forward and for the handoff's
        time (one timer per change)."""
        assert self._layout.change is not None
        handoff_at = self._layout.change.handoff_at
        if self._handoff_timer_at != handoff_at:
            self._handoff_timer_at = handoff_at
            delay = self._layout.until_handoff(workflow.now())
            if delay:
                self._handoff_timer = asyncio.ensure_future(workflow.sleep(delay))
        # ... and for a handoff moment moved later (a slow announcement made again): the
        # timer of the earlier one finds nothing due, and a quiet shard would wait forever;
        # and for a notice given to run out.
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: (
                    bool(self._pending or self._unfinished or self._forwards)
                    or self._handoff_ready()
                    or self._handoff_moved()
                ),
                timeout=self._notice_left(),
            )

    def _handoff_moved(self) -> bool:
        change = self._layout.change
        return change is None or change.handoff_at != self._handoff_timer_at

    def _handoff_ready(self) -> bool:
        """The handoff's time has come and nothing of a moving identity is pending here
        (the new owners hold those identities until then: order is kept)."""
        return (
            self._layout.handoff_due(workflow.now())
            and not self._unfinished
            and not any(self._layout.moves(self._shard, s.routing()) for s in self._pending)
        )

    async def _hand_off(self) -> None:
        change = self._layout.change
        assert change is not None
        # From now on a signal of a moved identity is checked here and forwarded.
        self._layout.handed_off = True
        now = workflow.now()
        idle = now - timedelta(seconds=self._settings.identity_idle_seconds)
        for receiver in change.receivers(self._shard):
            memory = self._memory.handoff(change.moves_to(receiver), idle, now)
            parts = split_handoff(memory, HANDOFF_MAX_BYTES)
            for index, part in enumerate(parts):
                handoff = HandoffPart(
                    change=change, sender=self._shard, index=index, count=len(parts), memory=part
                )
                await self._signal_shard(receiver, "handoff", handoff)
                self._stats.handoff_parts_sent += 1
        layout = workflow.get_external_workflow_handle(layout_workflow_id(self._task_queue()))
        try:
            await layout.signal("handed_off", HandedOff(epoch=change.epoch, shard=self._shard))
        except FailureError as err:  # a change told by hand, without the layout workflow
            workflow.logger.warning("handoff not reported to the layout workflow: %s", err)

    async def _forward(self) -> None:
        change = self._layout.change
        assert change is not None
        forwards, self._forwards = self._forwards, []
        by_owner: dict[int, list[JourneySignal]] = {}
        for signal in forwards:
            by_owner.setdefault(change.new_owner(signal.routing()), []).append(signal)
        for owner, signals in by_owner.items():
            for window in _windows(signals):
                await self._signal_shard(owner, DELIVER, RawValue(window))

    async def _signal_shard(self, shard: int, name: str, arg: Any) -> None:
        """Signal another shard of this queue until it took the signal (the layout
        workflow started every shard a change involves)."""
        handle = workflow.get_external_workflow_handle(shard_workflow_id(self._task_queue(), shard))
        while True:
            try:
                await handle.signal(name, arg)
            except FailureError as err:
                workflow.logger.warning(
                    "signal %s to shard %d failed, retrying: %s", name, shard, err
                )
                await self._back_off()
                continue
            self._failures = 0
            return

    @staticmethod
    def _task_queue() -> str:
        return workflow.info().task_queue

    def _backoff(self, failures: int) -> timedelta:
        return timedelta(seconds=self._settings.backoff_unit_seconds * 2 ** min(failures, 9))

    async def _back_off(self) -> None:
        self._failures += 1
        delay = min(MAX_BACKOFF, self._backoff(self._failures))
        await workflow.sleep(delay)

    async def _end_task_after_a_delivery(self) -> None:
        """Ends the workflow task (`_end_task`) once `max_deliveries_per_task` deliveries
        ended in it, so that their outcomes are stored before the next goes out. (The
        history's length only changes between tasks.)"""
        task = workflow.info().get_current_history_length()
        if (
            task == self._delivered_in_task
            and self._deliveries_in_task >= self._settings.max_deliveries_per_task
            and workflow.patched(DELIVERIES_PER_TASK)
        ):
            await self._end_task()

    async def _end_task(self) -> None:
        """Resumes in the next workflow task: the one the next update or signal starts, or a
        1 ms timer's when none comes first. (That task may be the first a rebuilt shard runs
        live: it is noted, so that its deliveries ask about the task before it.)"""
        if not workflow.patched(NEXT_TASK):
            await workflow.sleep(timedelta(milliseconds=1))
        else:
            task = workflow.info().get_current_history_length()
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: workflow.info().get_current_history_length() != task,
                    timeout=timedelta(milliseconds=1),
                )
        self._note_rebuild()

    def _count_delivery(self) -> None:
        task = workflow.info().get_current_history_length()
        if task != self._delivered_in_task:
            self._delivered_in_task, self._deliveries_in_task = task, 0
        self._deliveries_in_task += 1

    def _waits_for_next_task(self, signal: JourneySignal, task: int) -> bool:
        """Whether the signal must wait for a task after `task` (the running one) to go out:
        this task accepted it, in an update (SEND_WHAT_EARLIER_TASKS_ACCEPTED)."""
        return signal.accepted_in >= task and (signal.accepted_by_update or self._signals_wait)

    async def _deliver_batch(self) -> None:
        self._note_rebuild()
        max_bytes = (
            self._settings.max_batch_bytes if workflow.patched(DELIVERY_BATCH_BYTES) else 2**62
        )
        ready, later = self._pending, []
        if self._takes_updates:
            task = workflow.info().get_current_history_length()
            if any(self._waits_for_next_task(s, task) for s in self._pending[: self._batch_limit]):
                # (a batch gathered in full, or the shard's latest: sent whole, a task later,
                # after what the memory let go of meanwhile is archived, as the loop does)
                await self._end_task()
                await self._keep_archive()
                task = workflow.info().get_current_history_length()
            accepted_before = sum(
                1
                for _ in takewhile(lambda s: not self._waits_for_next_task(s, task), self._pending)
            )
            ready, later = self._pending[:accepted_before], self._pending[accepted_before:]
        batch = take_batch(self._memory, ready, self._batch_limit, workflow.now(), max_bytes)
        self._pending = batch.rest + later
        self._stats.after_deletion += len(batch.deleted)
        for signal in batch.deleted:
            self._drop_letter(signal)
        if not batch.signals:
            return
        lane = workflow.info().workflow_id
        live = not workflow.unsafe.is_replaying()
        forgotten = [s.occurred_at for s in batch.signals if s.forgotten]
        try:
            result = await workflow.execute_local_activity_method(
                JourneyActivities.deliver_journeys,
                DeliverInput(
                    lane=lane,
                    signals=batch.signals,
                    check_interruption=self._check_interruption,
                    rebuilt_at=self._rebuilt_at,
                    archive=(
                        self._archive.view(min(forgotten))
                        if self._archive is not None and forgotten
                        else None
                    ),
                ),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=DELIVERY_RETRY,
            )
        except FailureError as err:  # local activities raise the failure itself
            self._count_delivery()
            workflow.logger.warning("journey delivery failed, retrying later: %s", err)
            self._stats.failed_deliveries += 1
            failure = _not_sent(err)
            if failure is None:
                # Timed out or crashed: it may have sent part of the batch.
                for signal in batch.signals:
                    signal.doubt = True
            else:
                self._learn(failure, batch.signals, live)
                if failure.refused:
                    await self._refused(batch.signals, failure.reason)
                    return
            self._pending = batch.signals + self._pending
            await self._back_off()
            return
        self._count_delivery()
        self._failures = 0
        self._learn(result, batch.signals, live)
        outcome = result.outcome
        self._stats.deliveries += 1
        self._stats.delivered += len(batch.signals) - len(outcome.unsent) - len(result.duplicates)
        self._stats.duplicates += len(result.duplicates)
        self._stats.archived_duplicates += len(result.duplicates)
        self._stats.add_delivery(outcome.stats)
        mark_deleted(self._memory, outcome.deleted_identities, workflow.now())
        if outcome.in_doubt:
            await self._settle(settle_input(lane, batch.signals, outcome.in_doubt))
        if outcome.unfinished is not None:
            self._unfinished.append(outcome.unfinished)
        if outcome.unsent:
            self._pending = [batch.signals[i] for i in outcome.unsent] + self._pending
        if self._batch_limit < self._settings.max_batch and not self._suspects(self._pending):
            self._batch_limit = self._settings.max_batch
        if outcome.retry_after:
            await workflow.sleep(timedelta(seconds=outcome.retry_after))

    def _learn(self, check: HistoryCheck, batch: list[JourneySignal], live: bool) -> None:
        """What a delivery found in the shard's history, whether it then sent or failed."""
        if check.interruption == "unchecked":
            return
        self._stats.rebuild_checks += 1
        # Only a delivery that ran now answers for this activation (one replayed from
        # history answered for an earlier one); asked again, it would answer the same.
        if live:
            self._check_interruption = False
        if check.interruption == "cut-short":
            self._stats.cut_short += 1
            # The task that died may have sent any signal accepted by then, not only this
            # batch (it may have delivered several): all of them are in doubt until settled.
            for signal in batch + self._pending:
                if signal.accepted_in <= check.cut_short_at:
                    signal.doubt = True

    @staticmethod
    def _suspects(signals: list[JourneySignal]) -> bool:
        return any(signal.failures >= POISON_ATTEMPTS for signal in signals)

    async def _refused(self, batch: list[JourneySignal], reason: str) -> None:
        """A delivery failed before sending because of a record of its batch: that would
        happen every time. Counted against each signal; once the batch holds a suspect it
        is halved after each failure, and a suspect that fails alone is dead-lettered: the
        rest flows (in order: a batch is always the head of what is pending)."""
        for signal in batch:
            signal.failures += 1
        if not self._suspects(batch):
            self._pending = batch + self._pending
            await self._back_off()
            return
        if len(batch) == 1:
            [signal] = batch
            self._dead_letter(signal, [f"failed {signal.failures} times before sending: {reason}"])
            self._batch_limit = self._settings.max_batch
            return
        self._pending = batch + self._pending
        self._batch_limit = len(batch) // 2
        await workflow.sleep(ISOLATION_PAUSE)

    async def _settle(self, params: SettleInput) -> None:
        """Nothing else is delivered until every doubt is settled: a person's later events
        must not overtake an earlier one that may still have to be sent."""
        while True:
            try:
                progress = await workflow.execute_activity_method(
                    JourneyActivities.settle_journeys,
                    params,
                    start_to_close_timeout=timedelta(minutes=30),
                    heartbeat_timeout=timedelta(seconds=60),
                    retry_policy=SETTLE_RETRY,
                )
            except FailureError as err:
                workflow.logger.error("settling a delivery failed, retrying: %s", err)
                await self._back_off()
                continue
            self._failures = 0
            self._stats.add_settlement(progress)
            return

    async def _keep_archive(self) -> None:
        """Write what the memory let go of, delete what expired. A failure holds nothing up:
        until the archive has caught up, forgotten signals are settled by reading Insider."""
        if self._archive is None or workflow.now() < self._archive_resumes:
            return
        work = self._archive.work(workflow.now())
        if work.empty():
            return
        try:
            await workflow.execute_local_activity_method(
                JourneyActivities.archive_journeys,
                work,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=DELIVERY_RETRY,
            )
        except FailureError as err:  # local activities raise the failure itself
            workflow.logger.warning("dedupe archive not written, retrying later: %s", err)
            self._archive_failures += 1
            delay = self._backoff(self._archive_failures)
            self._archive_resumes = workflow.now() + min(MAX_BACKOFF, delay)
            return
        self._archive_failures = 0
        self._archive.done(work)
        self._stats.archived_objects += len(work.writes)

    async def _finish_bookkeeping(self) -> None:
        book = self._unfinished[0]
        try:
            await workflow.execute_local_activity_method(
                JourneyActivities.finish_journeys,
                FinishInput(book=book),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=DELIVERY_RETRY,
            )
        except FailureError as err:  # local activities raise the failure itself
            workflow.logger.warning("delivery bookkeeping failed, retrying later: %s", err)
            await self._back_off()
            return
        self._unfinished.pop(0)
