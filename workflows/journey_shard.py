"""JourneyShardWorkflow: the realtime path for one shard of all identities.

Identities (customer, else anonymous visitor, else email) are spread over a fixed number
of shards by a stable hash; the bridge group-commits the signals of a short window into one
signal per shard. A shard accepts each signal by the rules of ct_insider/journeys/intake.py
(duplicates, stale state, deleted customers, forgotten keys), and delivers what is pending
in batches, in order of occurrence, one local activity per batch: the activity sends one
upsert for many people, shared with the other shards of the worker.

Exactly once, without reading Insider on the steady path:
- a delivery that may have been stored (ambiguous failure) is settled by a regular
  activity that reads Insider for those users only, before anything later is sent;
- a shard rebuilt from history asks Temporal (not Insider) whether the delivery before was
  cut short by a dying worker; only then does it settle that batch by reading Insider;
- continue-as-new happens in a workflow task of its own (after a 1 ms timer), so a
  completion Temporal refuses because a signal arrived never repeats a delivery.

Dedupe beyond the memory: each generation of keys the shard's memory lets go of is written
to the dedupe archive (commercetools custom objects, ct_insider/journeys/archive_lane.py),
kept `archive_retention_minutes`; a forgotten signal is looked up there by its delivery,
and Insider is asked only when the archive does not cover it.

Nothing the bridge acknowledged is dropped: a delivery that fails before sending is retried
with backoff; what Insider refuses goes to the dead-letter store; the shard never fails.
"""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.journey import (
        NOT_SENT,
        DeliverInput,
        FinishInput,
        JourneyActivities,
        SettleInput,
    )
    from ct_insider.deadletters import DeadLetterDraft
    from ct_insider.journeys.archive_lane import ArchiveLane, ArchiveLaneSnapshot, new_lane
    from ct_insider.journeys.delivery import Bookkeeping, DeliveryStats
    from ct_insider.journeys.intake import Verdict, accept, mark_deleted, take_batch
    from ct_insider.journeys.memory import MemorySnapshot, ShardMemory, memory_with
    from ct_insider.journeys.plan import PlannedUser
    from ct_insider.journeys.settle import SettleProgress
    from ct_insider.journeys.signals import JourneySignal
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
SIGNALS = TypeAdapter(list[JourneySignal])


class ShardSettings(BaseModel):
    max_batch: int = Field(default=250, ge=1)  # signals per delivery
    # >0: after the first signal, gather this long before delivering, so deliveries that
    # arrive shuffled within the window are put back in order (costs a timer per batch).
    gather_seconds: float = Field(default=0.0, ge=0)
    seen_capacity: int = Field(default=30_000, ge=16)  # dedupe keys remembered
    identity_capacity: int = Field(default=20_000, ge=1)
    identity_idle_seconds: float = Field(default=24 * 3600, gt=0)  # then forgotten at CAN
    # A run continues-as-new after about this many signals. Each continue-as-new pauses the
    # shard for a few hundred ms (the carried memory, ~0.8 MB, is written and read back); a
    # rebuild (a restart) replays the whole run (bench/realtime.py: 3,000 signals replay in
    # 0.3 s of CPU). Each shard's threshold is offset by its index (0.75x to 1.25x), so
    # shards under even traffic do not all pause at once.
    max_run_signals: int = Field(default=6_000, ge=1)
    max_history_events: int = Field(default=5_000, ge=100)
    max_history_bytes: int = Field(default=4_000_000, ge=100_000)
    # Pending signals carried over continue-as-new, at most (with the memory, well under
    # Temporal's 2 MB per payload); with more pending the shard delivers first.
    carry_max_bytes: int = Field(default=512_000, ge=10_000)
    # How long the dedupe archive keeps what the memory let go of (0: no archive; forgotten
    # signals are then settled by reading Insider). The dedupe horizon is this minus the
    # clock-skew allowance (10 minutes): see docs/design/realtime.md.
    archive_retention_minutes: float = Field(default=60.0, ge=0)


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
    archive: ArchiveLaneSnapshot | None = None


class ShardInput(BaseModel):
    shard: int = Field(ge=0)
    settings: ShardSettings = Field(default_factory=ShardSettings)
    carried: ShardCarry | None = None


def _not_sent(failure: BaseException) -> bool:
    """Whether a failed delivery stopped before sending anything (see activities/journey)."""
    while failure is not None:
        if isinstance(failure, ApplicationError) and failure.type == NOT_SENT:
            return True
        failure = failure.__cause__  # type: ignore[assignment]
    return False


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


def shard_workflow_id(task_queue: str, shard: int) -> str:
    """Named after the journey task queue, so deployments sharing a namespace (or tests
    sharing a server) keep their shards apart."""
    return f"{task_queue}-shard-{shard:03d}"


@workflow.defn
class JourneyShardWorkflow:
    @workflow.init
    def __init__(self, params: ShardInput) -> None:
        carried = params.carried or ShardCarry()
        self._settings = params.settings
        self._memory = ShardMemory(
            seen_capacity=params.settings.seen_capacity,
            identity_capacity=params.settings.identity_capacity,
            snapshot=carried.memory,
        )
        self._pending: list[JourneySignal] = list(carried.pending)
        self._unfinished: list[Bookkeeping] = list(carried.unfinished)
        self._stats = carried.stats
        self._failures = 0
        self._archive = self._archive_lane(params.settings, carried.archive)
        self._archive_failures = 0
        self._archive_resumes = workflow.now()
        self._run_signals = 0
        # Intake keys accepted since the carried state was built (while continuing-as-new).
        self._since_carry: list[str] | None = None
        spread = 0.75 + 0.5 * ((params.shard * 0.618) % 1.0)
        self._max_run_signals = max(1, int(params.settings.max_run_signals * spread))
        # Every run starts by asking Temporal whether a task that delivered was cut short (a
        # rebuilt run, or a first task that died: that one is not even a replay), and asks
        # again until a delivery that ran now found the history clean.
        self._check_interruption = True

    def _archive_lane(
        self, settings: ShardSettings, carried: ArchiveLaneSnapshot | None
    ) -> ArchiveLane | None:
        if not settings.archive_retention_minutes or not workflow.patched(ARCHIVE_PATCH):
            return None
        seen = self._memory.seen
        snapshot = carried or new_lane(
            workflow.uuid4().hex[:16], ahead_until=seen.ahead_until(), now=workflow.now()
        )
        lane = ArchiveLane(
            snapshot,
            shard=workflow.info().workflow_id,
            retention=timedelta(minutes=settings.archive_retention_minutes),
            max_pending_keys=settings.seen_capacity // 4,
        )
        seen.on_drop = lane.queue
        return lane

    @workflow.signal
    def deliver(self, window: RawValue) -> None:
        """A window of the bridge's group commit: a JSON array of journey signals."""
        now = workflow.now()
        task = workflow.info().get_current_history_length()
        for signal in self._read(window.payload.data):
            self._run_signals += 1
            verdict = accept(self._memory, signal, now)
            self._stats.count(verdict)
            if verdict is Verdict.ACCEPTED:
                signal.accepted_in = task
                self._pending.append(signal)
                if self._since_carry is not None:
                    self._since_carry.append(signal.intake_key())
            elif verdict is not Verdict.DUPLICATE:
                self._drop_letter(signal)

    def _read(self, data: bytes) -> list[JourneySignal]:
        """The window's signals. One the worker cannot read (a newer bridge during a rolling
        deploy) is dead-lettered with its reason: the rest of the window goes on (the SDK
        would drop a whole signal it cannot decode)."""
        try:
            return SIGNALS.validate_json(data)
        except ValidationError:
            pass
        readable = []
        for raw in json.loads(data):
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
        """Unix seconds since when every key the memory let go of is in the dedupe archive
        (None: no archive, nothing archived yet, or a write pending)."""
        return None if self._archive is None else self._archive.covers_from()

    @workflow.run
    async def run(self, params: ShardInput) -> ShardStats:
        settings = params.settings
        while True:
            await workflow.wait_condition(lambda: bool(self._pending or self._unfinished))
            if self._unfinished:
                # Ledger entries first: a purchase delivered but not yet recorded must not
                # look undelivered to the next batch.
                await self._finish_bookkeeping()
                continue
            if self._pending:
                if settings.gather_seconds:
                    with contextlib.suppress(TimeoutError):
                        await workflow.wait_condition(
                            lambda: len(self._pending) >= settings.max_batch,
                            timeout=timedelta(seconds=settings.gather_seconds),
                        )
                await self._keep_archive()
                await self._deliver_batch()
            if self._time_to_continue():
                # The carried state is built now, so that the task that continues-as-new is
                # short (Temporal refuses its completion if a signal arrives meanwhile, and
                # the shard then replays its run); and that task is one of its own, so such a
                # refusal never repeats a delivery.
                carry = self._carry()
                await workflow.sleep(timedelta(milliseconds=1))
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    ShardInput(shard=params.shard, settings=settings, carried=self._complete(carry))
                )

    def _time_to_continue(self) -> bool:
        info = workflow.info()
        grown = (
            self._run_signals >= self._max_run_signals
            or info.get_current_history_length() >= self._settings.max_history_events
            or info.get_current_history_size() >= self._settings.max_history_bytes
            or info.is_continue_as_new_suggested()
        )
        return grown and self._carryable()

    def _carryable(self) -> bool:
        budget = self._settings.carry_max_bytes
        for signal in self._pending:
            budget -= len(signal.model_dump_json())
            if budget < 0:
                return False
        return True

    def _carry(self) -> ShardCarry:
        idle = timedelta(seconds=self._settings.identity_idle_seconds)
        self._since_carry = []
        return ShardCarry(memory=self._memory.snapshot(workflow.now() - idle, workflow.now()))

    def _complete(self, carry: ShardCarry) -> ShardCarry:
        """What changed since the carry was built: signals accepted meanwhile (their keys
        join the memory), pending work, statistics."""
        for signal in self._pending:
            signal.accepted_in = 0  # before any task of the next run
        memory = carry.memory
        if self._since_carry:
            memory = memory_with(memory, self._since_carry, workflow.now())
        self._since_carry = None
        return ShardCarry(
            memory=memory,
            pending=self._pending,
            unfinished=self._unfinished,
            stats=self._stats.model_copy(update={"runs": self._stats.runs + 1}),
            archive=self._archive.snapshot() if self._archive is not None else None,
        )

    async def _back_off(self) -> None:
        self._failures += 1
        delay = min(MAX_BACKOFF, timedelta(seconds=2 ** min(self._failures, 9)))
        await workflow.sleep(delay)

    async def _deliver_batch(self) -> None:
        batch = take_batch(self._memory, self._pending, self._settings.max_batch, workflow.now())
        self._pending = batch.rest
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
            workflow.logger.warning("journey delivery failed, retrying later: %s", err)
            if not _not_sent(err):
                # Timed out or crashed: it may have sent part of the batch.
                for signal in batch.signals:
                    signal.doubt = True
            self._pending = batch.signals + self._pending
            self._stats.failed_deliveries += 1
            await self._back_off()
            return
        self._failures = 0
        # Only a delivery that ran now says anything about this run's history: one replayed
        # from it found an earlier state of it clean.
        if live and result.interruption == "clean":
            self._check_interruption = False
        if result.interruption != "unchecked":
            self._stats.rebuild_checks += 1
        if result.interruption == "cut-short":
            self._stats.cut_short += 1
            # The task that died may have sent any signal accepted by then, not only this
            # batch (it may have delivered several): those still pending are in doubt too.
            for signal in self._pending:
                if signal.accepted_in <= result.cut_short_at:
                    signal.doubt = True
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
            requeued = [batch.signals[i] for i in outcome.unsent]
            if result.interruption == "cut-short":
                for signal in requeued:
                    signal.doubt = True
            self._pending = requeued + self._pending
        if outcome.retry_after:
            await workflow.sleep(timedelta(seconds=outcome.retry_after))

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
            delay = timedelta(seconds=2 ** min(self._archive_failures, 9))
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
