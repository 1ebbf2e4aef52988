"""Group commit: the signals of a short window, handed to their journey shard at once.

Every request the bridge answers 202 has been stored by Temporal. Rather than one
hand-over per event, the committer gathers what arrives for a shard during a window
(`BRIDGE_COMMIT_WINDOW_MS`, at most 500 signals or ~1 MB: a fuller window is closed and the
next one opened) and hands it over as one `deliver` signal (signal-with-start); each request
waits for the commit of the windows holding its signals. One shard's windows are committed
one after the other, so a person's signals reach the shard in the order the bridge received
them.

Around a continue-as-new, updates instead: a signal that arrives while a shard
continues-as-new fails that workflow task, and the worker then replays the whole run (3-5 s
of a busy shard's events held, measured: docs/design/realtime.md); an update that arrives
then moves to the next run. So a shard due to continue-as-new gives notice in its memo a few
seconds before (ShardSettings.continue_notice_seconds), which each lane reads when it
describes its shard (every HISTORY_CHECK_SECONDS, for the backlog too), and until the next
run the lane hands over its windows as `deliver` updates (update-with-start), answered once
the shard has accepted them. Not always: an update is accepted only by the workflow task
after the one running (a few deliveries), so a sender waits 0.25-0.6 s where a signal is
stored in milliseconds (bench/README.md: one event per request fell from 414 to 251/s at 64
connections). A window no shard accepts within UPDATE_ACCEPT_SECONDS (a worker
restarting, an old worker without the update) is stored as a signal instead: Temporal
keeps it until a worker takes it. Should the update be taken after all, the shard's dedupe
memory drops the second copy.

Routing follows the journey layout (bridge/layout.py): a reshard takes effect at a moment
every bridge knows in advance. A window is stored by the layout in effect when its commit
starts: the signals of a window routed before whose identity moved since go to the lane of
their new shard (which holds them until their old shard handed off), so only windows
already being stored when a reshard takes effect reach the old shards afterwards.

Backpressure: a shard whose history grows beyond `BRIDGE_SHARD_BACKLOG_BYTES` is not
keeping up (Insider or the workers are down); its events are answered 503 with
Retry-After until it has caught up, so its history never nears Temporal's limits and
the senders keep what they could not hand over.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanContext
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.common import RawValue, WorkflowIDConflictPolicy
from temporalio.service import RPCError

from bridge.history import HISTORY_CHECK_SECONDS, described_run
from bridge.layout import LayoutReader
from ct_insider import telemetry
from ct_insider.journeys.signals import (
    JourneySignal,
    shard_of,
    window_has_room,
    window_part,
    window_payload,
)
from ct_insider.logging import get_logger
from workflows.journey_shard import (
    CONTINUING_MEMO,
    DELIVER,
    SHARD_TASK_TIMEOUT,
    JourneyShardWorkflow,
    ShardInput,
    ShardSettings,
    shard_workflow_id,
)

log = get_logger(__name__)

# Windows waiting for their commit while Temporal is slow: beyond, the shard's events get 503.
MAX_QUEUED_WINDOWS = 8
# A shard's backlog is reported this long after it was last described.
BACKLOG_REPORTED_SECONDS = 60.0
# How long a window's update may wait for its shard to take it before the window is stored
# as a signal. A live shard takes one within its current workflow task (a delivery: well
# under a second); a worker that died holds its shards until Temporal gives their tasks to
# another (seconds).
UPDATE_ACCEPT_SECONDS = 4.0
# A signal after an update that was not taken gets this long: Temporal stores a signal in
# milliseconds when it is up.
FALLBACK_SIGNAL_TIMEOUT = timedelta(seconds=2)
# A window's store, both ways, takes at most this long: then its requests are answered 503.
# (A signal sent first has all of it.)
STORE_SECONDS = UPDATE_ACCEPT_SECONDS + FALLBACK_SIGNAL_TIMEOUT.total_seconds()
# After a fallback, the shard's windows go as signals for this long before an update is tried
# again: a shard slow to take updates (Insider slow or failing inside its delivery, a worker
# restarting) would otherwise hold each window UPDATE_ACCEPT_SECONDS, and its senders with it.
SIGNALS_AFTER_FALLBACK_SECONDS = 30.0
# A describe of a shard (its backlog, its notice) that takes longer is given up.
DESCRIBE_SECONDS = 5.0


class TemporalUnavailable(Exception):
    """Temporal did not take the signal: the sender must deliver again later."""


class ShardBacklogged(TemporalUnavailable):
    """The shard is far behind; the sender must deliver again later."""


@dataclass(frozen=True)
class ShardPart:
    """A journey signal as its shard receives it: whose it is, and its JSON in a window."""

    routing_key: str
    data: bytes

    @classmethod
    def of(cls, signal: JourneySignal) -> ShardPart:
        """Stamps the signal with when the bridge received it (the shard measures its dedupe
        horizon on our clock, never the sender's). Raises ValueError for a signal that
        names nobody."""
        signal.received_at = datetime.now(UTC)
        return cls(signal.routing(), window_part(signal))


@dataclass
class _Window:
    opened: float
    committed: asyncio.Future[None]
    epoch: int  # of the layout its signals were routed by
    parts: list[bytes] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)  # each part's routing key
    size: int = 0
    # The spans of the requests whose signals the window holds (only while tracing).
    requests: list[SpanContext] = field(default_factory=list)

    def has_room(self, part: bytes) -> bool:
        return window_has_room(len(self.parts), self.size, part)


class _Lane:
    """One shard's windows, committed in order by one task; while one is being committed
    the next ones fill (each at most 500 signals, ~1 MB)."""

    def __init__(self, committer: ShardCommitter, shard: int) -> None:
        self._committer = committer
        self.shard = shard
        self._windows: deque[_Window] = deque()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.history_bytes = 0
        # The shard gave notice that it continues-as-new: its windows go as updates.
        self.continuing = False
        self.checked_at = 0.0
        self._describing = False

    async def add(self, signals: list[tuple[str, bytes]], epoch: int) -> None:
        """Add (routing key, signal) pairs routed by layout `epoch`; return once stored."""
        self._describe_when_due()
        if self.history_bytes > self._committer.backlog_bytes:
            raise ShardBacklogged(
                f"journey shard {self.shard} is behind ({self.history_bytes:,} bytes of history)"
            )
        if len(self._windows) >= MAX_QUEUED_WINDOWS:
            raise ShardBacklogged(f"journey shard {self.shard}: Temporal is slow to store")
        loop = asyncio.get_running_loop()
        waiting: list[asyncio.Future[None]] = []
        request = trace.get_current_span().get_span_context() if telemetry.tracer() else None
        for route, part in signals:
            if (
                not self._windows
                or not self._windows[-1].has_room(part)
                or self._windows[-1].epoch != epoch
            ):
                self._windows.append(_Window(time.monotonic(), loop.create_future(), epoch))
            window = self._windows[-1]
            window.parts.append(part)
            window.routes.append(route)
            window.size += len(part)
            if not waiting or waiting[-1] is not window.committed:
                waiting.append(window.committed)
                if request is not None and request.is_valid:
                    window.requests.append(request)
        if len(self._windows) > 1 or not self._windows[0].has_room(b""):
            self._ready.set()  # a full window need not wait out its time
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._commit_windows())
        await asyncio.gather(*waiting)

    async def _commit_windows(self) -> None:
        while self._windows:
            window = self._windows[0]
            remaining = window.opened + self._committer.window_seconds - time.monotonic()
            if remaining > 0 and len(self._windows) == 1 and not self._ready.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), timeout=remaining)
            self._windows.popleft()
            self._ready.clear()
            moved = self._committer.reroute(self.shard, window)
            try:
                if window.parts:
                    with _window_span(self.shard, window):
                        await self._committer.store(self.shard, window.parts, self.continuing)
            except BaseException as exc:  # each request waiting on this window answers 503
                failure = (
                    exc if isinstance(exc, TemporalUnavailable) else TemporalUnavailable(repr(exc))
                )
                if not window.committed.done():
                    window.committed.set_exception(failure)
                if not isinstance(exc, Exception) and _being_cancelled():
                    raise  # (the lane itself is stopped)
                # (else a cancellation the client library raised as its own: the window's
                # requests are answered and the lane goes on, none left waiting)
            if moved is not None:  # stored once the moved signals are stored too
                moved.add_done_callback(partial(_settle, window.committed))
            elif not window.committed.done():
                window.committed.set_result(None)

    @property
    def queued(self) -> int:
        return len(self._windows)

    def _describe_when_due(self) -> None:
        """Asks Temporal again, in the background, how large the shard's history is (the
        backlog check) and whether it gave notice of continuing-as-new."""
        now = time.monotonic()
        if now - self.checked_at >= self._committer.describe_seconds and not self._describing:
            self.checked_at = now
            self._describing = True
            self._committer.spawn(self._describe())

    async def _describe(self) -> None:
        """One at a time (a late answer must not undo a newer one: a notice read as
        withdrawn just before the shard continues), and bounded (the client retries past its
        RPC timeout while Temporal is unreachable)."""
        workflow_id = self._committer.workflow_id(self.shard)
        try:
            described = await asyncio.wait_for(
                described_run(self._committer.client, workflow_id, flag=CONTINUING_MEMO),
                DESCRIBE_SECONDS,
            )
        except TimeoutError:
            described = None
        finally:
            self._describing = False
        if described is not None:
            self.history_bytes = described.history_bytes
            self.continuing = described.flagged


def _being_cancelled() -> bool:
    """Whether the running task itself is being cancelled (not merely handed a
    CancelledError or a library's stand-in for one by what it awaited)."""
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0


def _read_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _settle(committed: asyncio.Future[None], moved: asyncio.Future[None]) -> None:
    failure = moved.exception() if not moved.cancelled() else TemporalUnavailable("cancelled")
    if committed.done():  # (the window's own signal failed: its requests answered 503)
        return
    if failure is None:
        committed.set_result(None)
    else:
        committed.set_exception(
            failure
            if isinstance(failure, TemporalUnavailable)
            else TemporalUnavailable(str(failure))
        )


@contextlib.contextmanager
def _window_span(shard: int, window: _Window) -> Iterator[None]:
    """The trace of a window: a child of its first request's span, linked to the others'.

    The window's one signal (or update) carries this span's context into the shard (the
    tracing interceptor's SignalWithStartWorkflow span is its child), so the first request's trace
    runs on through the workflow and its activities; every other request in the window is
    found from the span's links.
    """
    tracer = telemetry.tracer()
    if tracer is None or not window.requests:
        yield
        return
    first, *others = window.requests
    with tracer.start_as_current_span(
        "bridge.commit_window",
        context=trace.set_span_in_context(trace.NonRecordingSpan(first)),
        links=[trace.Link(other) for other in others],
        attributes={"journey.shard": shard, "journey.signals": len(window.parts)},
    ):
        yield


class ShardCommitter:
    def __init__(
        self,
        client: Client,
        task_queue: str,
        *,
        shards: int,
        window_seconds: float = 0.15,
        backlog_bytes: int = 8_000_000,
        settings: ShardSettings | None = None,
        layout: LayoutReader | None = None,
        gauges: bool = True,
    ) -> None:
        """`shards`: TEMPORAL_JOURNEY_SHARDS, the layout while no reshard created one;
        `gauges`: report the backlog and open-window gauges (the bridge's committer; not the
        worker's cart hand-off, whose view would stand beside the bridge's in alert rules
        that take the maximum over every job)."""
        self.client = client
        self.task_queue = task_queue
        self.layout = layout or LayoutReader(client, task_queue, shards)
        self.window_seconds = window_seconds
        self.backlog_bytes = backlog_bytes
        self._settings = settings or ShardSettings()
        self._lanes: dict[int, _Lane] = {}
        self._background: set[asyncio.Task[None]] = set()
        # Windows stored by Temporal; of which as updates; updates not taken in time (their
        # windows then stored as signals) (for /stats).
        self.commits = self.updates = self.fallbacks = 0
        self.update_accept_seconds = UPDATE_ACCEPT_SECONDS
        self.describe_seconds = HISTORY_CHECK_SECONDS  # each shard described this often
        self.updates_always = False  # every window as an update (tests)
        self._signals_until: dict[int, float] = {}  # shard -> time.monotonic()
        if gauges:
            telemetry.track_open_timers(self)
            telemetry.track_journey_backlog(self)

    def open_timers(self) -> dict[str, int]:
        """Windows open or waiting for their commit (for the ct_insider_open_timers gauge)."""
        return {"commit_window": sum(lane.queued for lane in self._lanes.values())}

    def journey_backlog(self) -> dict[int, float]:
        """Each shard's history as described lately (when events arrived for it), as a
        fraction of the size at which its events are refused (the backlog gauge). A shard
        with no events for a while is left out: its last value may be long gone (it
        continued-as-new, or a reshard retired it), and an alert on it would never clear."""
        recent = time.monotonic() - BACKLOG_REPORTED_SECONDS
        return {
            shard: lane.history_bytes / self.backlog_bytes
            for shard, lane in self._lanes.items()
            if lane.checked_at >= recent
        }

    async def commit(self, signals: Sequence[JourneySignal]) -> int:
        return await self.commit_parts([ShardPart.of(signal) for signal in signals])

    async def commit_parts(self, parts: Sequence[ShardPart]) -> int:
        """Return once Temporal stored every part (with the shards' other signals of the
        window); raises TemporalUnavailable otherwise. Returns how many shards were used."""
        status = await self.layout.status()
        if status is None:
            raise TemporalUnavailable("the journey layout could not be read lately")
        layout = status.in_effect(datetime.now(UTC))
        by_shard: dict[int, list[tuple[str, bytes]]] = {}
        for part in parts:
            by_shard.setdefault(shard_of(part.routing_key, layout.shards), []).append(
                (part.routing_key, part.data)
            )
        await self._add(by_shard, layout.epoch)
        return len(by_shard)

    async def _add(self, by_shard: dict[int, list[tuple[str, bytes]]], epoch: int) -> None:
        results = await asyncio.gather(
            *(self._lane(shard).add(signals, epoch) for shard, signals in by_shard.items()),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def reroute(self, shard: int, window: _Window) -> asyncio.Future[None] | None:
        """A window routed by a layout no longer in effect: the signals whose identity moved
        leave it for their new shard's lane; the task that stores them, if any."""
        status = self.layout.latest
        if status is None:
            return None
        layout = status.in_effect(datetime.now(UTC))
        if layout.epoch == window.epoch:
            return None
        moved: dict[int, list[tuple[str, bytes]]] = {}
        kept: list[tuple[str, bytes]] = []
        for route, part in zip(window.routes, window.parts, strict=True):
            owner = shard_of(route, layout.shards)
            (kept if owner == shard else moved.setdefault(owner, [])).append((route, part))
        window.routes = [route for route, _ in kept]
        window.parts = [part for _, part in kept]
        window.size = sum(len(part) for part in window.parts)
        if not moved:
            return None
        log.info("window rerouted by the new journey layout", shard=shard, epoch=layout.epoch)
        return self.spawn(self._add(moved, layout.epoch))

    def workflow_id(self, shard: int) -> str:
        return shard_workflow_id(self.task_queue, shard)

    def _lane(self, shard: int) -> _Lane:
        lane = self._lanes.get(shard)
        if lane is None:
            lane = self._lanes[shard] = _Lane(self, shard)
        return lane

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        """A task kept until it is done (the event loop only holds tasks weakly)."""
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def store(self, shard: int, parts: list[bytes], continuing: bool = False) -> None:
        """Hand the window to the shard (see the module's doc) within STORE_SECONDS, as an
        update if the shard is `continuing`-as-new; raises TemporalUnavailable when Temporal
        stored it neither way."""
        payload = RawValue(window_payload(parts))
        try:
            await asyncio.wait_for(
                self._store(shard, payload, continuing or self.updates_always), STORE_SECONDS
            )
        except TimeoutError as exc:
            raise TemporalUnavailable(f"journey shard {shard}: not stored in time") from exc
        self.commits += 1

    async def _store(self, shard: int, payload: RawValue, as_update: bool) -> None:
        signal_timeout = timedelta(seconds=STORE_SECONDS)
        if as_update and time.monotonic() >= self._signals_until.get(shard, 0.0):
            try:
                await asyncio.wait_for(self._update(shard, payload), self.update_accept_seconds)
                self.updates += 1
                return
            except (
                TimeoutError,
                RPCError,
                RuntimeError,  # (a lazy client not connected yet)
                WorkflowUpdateFailedError,  # (an old worker, or a run begun before updates)
                WorkflowUpdateRPCTimeoutOrCancelledError,
            ) as exc:
                if _being_cancelled():
                    raise  # (the bridge is stopping: no fallback)
                log.info("journey window not taken as an update", shard=shard, error=repr(exc))
                self._signals_until[shard] = time.monotonic() + SIGNALS_AFTER_FALLBACK_SECONDS
                self.fallbacks += 1
                signal_timeout = FALLBACK_SIGNAL_TIMEOUT
        await self._signal(shard, payload, signal_timeout)

    def _start(self, shard: int) -> WithStartWorkflowOperation[JourneyShardWorkflow, Any]:
        return WithStartWorkflowOperation(
            JourneyShardWorkflow.run,
            ShardInput(shard=shard, settings=self._settings),
            id=self.workflow_id(shard),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            task_timeout=SHARD_TASK_TIMEOUT,
        )

    async def _update(self, shard: int, payload: RawValue) -> None:
        start = self._start(shard)
        # (when the update fails, so does the start's handle, which nobody awaits: its
        # exception is read here, or asyncio reports it as never retrieved)
        start._workflow_handle.add_done_callback(_read_outcome)
        update = await self.client.start_update_with_start_workflow(
            JourneyShardWorkflow.deliver_window,
            payload,
            start_workflow_operation=start,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            rpc_timeout=timedelta(seconds=self.update_accept_seconds),
        )
        # A rejected update (a run begun before updates) is "accepted" too as far as waiting
        # goes: its outcome says which. The handler completes in the task that accepts it, so
        # the outcome is known by now.
        await update.result(rpc_timeout=timedelta(seconds=self.update_accept_seconds))

    async def _signal(self, shard: int, payload: RawValue, rpc_timeout: timedelta) -> None:
        try:
            await self.client.start_workflow(
                JourneyShardWorkflow.run,
                ShardInput(shard=shard, settings=self._settings),
                id=self.workflow_id(shard),
                task_queue=self.task_queue,
                start_signal=DELIVER,
                task_timeout=SHARD_TASK_TIMEOUT,
                start_signal_args=[payload],
                rpc_timeout=rpc_timeout,
            )
        except (RPCError, RuntimeError) as exc:
            log.warning("journey window not stored", shard=shard, error=str(exc))
            raise TemporalUnavailable(str(exc)) from exc
