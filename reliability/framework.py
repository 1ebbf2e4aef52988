"""What every fault scenario shares: the stack, worker processes that can be killed and
restarted, counting what Insider holds against what was produced, and the one table.

A scenario sets up its data, starts its load, injects its fault (and proves the fault
happened: a scenario whose fault never bit fails), waits for the system to settle within
a bound of counted work or a multiple of the fault-free time, and returns one `Row`."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from bench.harness import Stack, worker_process
from emulators.insider.events import held_event_keys
from emulators.process import ManagedProcess


@dataclass(frozen=True)
class Tally:
    """Records produced against what Insider holds, by key (a purchase: order number and
    SKU; a storefront event: its id; a catalog item: id and locale)."""

    sent: int
    received: int
    lost: int
    duplicated: int
    # A few of the keys lost and duplicated, to start looking from.
    examples: tuple[str, ...] = ()

    @staticmethod
    def of(expected: Counter[str], stored: Counter[str]) -> Tally:
        received = sum(min(n, stored[key]) for key, n in expected.items())
        lost_keys = [key for key, n in expected.items() if stored[key] < n]
        lost = sum(max(0, n - stored[key]) for key, n in expected.items())
        # Anything Insider holds more often than produced, unexpected keys included.
        duplicated_keys = [key for key, n in stored.items() if n > expected[key]]
        duplicated = sum(max(0, n - expected[key]) for key, n in stored.items())
        examples = tuple(
            [f"lost {key}" for key in lost_keys[:3]]
            + [f"duplicated {key} x{stored[key]}" for key in duplicated_keys[:3]]
        )
        return Tally(sum(expected.values()), received, lost, duplicated, examples)


@dataclass
class Row:
    scenario: str
    tally: Tally
    # What proves the fault happened (a scenario fails if it did not).
    fault: str
    fault_seen: bool
    # Seconds from the end of the fault (the worker restarted, the API back) until every
    # record was in Insider; for faults that last the whole run, the run's time.
    recovery_seconds: float
    # The bound the recovery must stay within, and why (e.g. 3 x fault-free + waits imposed).
    bound_seconds: float
    bound_reason: str
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.fault_seen
            and self.tally.lost == 0
            and self.tally.duplicated == 0
            and self.tally.received == self.tally.sent
            and self.recovery_seconds <= self.bound_seconds
        )

    def misses(self) -> list[str]:
        found = []
        if not self.fault_seen:
            found.append("the fault never happened")
        if self.tally.lost:
            found.append(f"{self.tally.lost} lost")
        if self.tally.duplicated:
            found.append(f"{self.tally.duplicated} duplicated")
        if self.recovery_seconds > self.bound_seconds:
            found.append(f"recovery {self.recovery_seconds:.1f} s > {self.bound_seconds:.1f} s")
        return found


class ScenarioFailed(Exception):
    """A scenario that could not produce its row (a wait ran out, a run failed)."""


@dataclass
class Suite:
    stack: Stack
    client: Client
    # Worker processes competing on the same task queues (2: the competing-workers mode).
    workers: int
    logs: Path
    # Fault-free seconds of each workload, measured in this run by its baseline scenario.
    baselines: dict[str, float] = field(default_factory=dict)
    # Insider requests taken while a burst of faults was on (the current scenario's).
    requests_in_bursts: int = 0

    def reset(self) -> None:
        httpx.post(f"{self.stack.ct_url}/_emulator/reset", timeout=60).raise_for_status()
        httpx.post(f"{self.stack.insider_url}/_emulator/reset", timeout=60).raise_for_status()

    def insider_faults(self, **faults: object) -> None:
        httpx.post(
            f"{self.stack.insider_url}/_emulator/faults", json=faults, timeout=30
        ).raise_for_status()

    def ct_faults(self, **faults: object) -> None:
        httpx.post(
            f"{self.stack.ct_url}/_emulator/faults", json=faults, timeout=30
        ).raise_for_status()

    def expire_ct_tokens(self) -> None:
        """Revoke every commercetools token issued so far (refused 401 from now on)."""
        httpx.post(f"{self.stack.ct_url}/_emulator/expire-tokens", timeout=30).raise_for_status()

    def set_insider_limits(self, **per_minute: int) -> None:
        httpx.post(
            f"{self.stack.insider_url}/_emulator/limits", json=per_minute, timeout=30
        ).raise_for_status()

    def plant_drift(self, **drift: object) -> None:
        """Change Insider behind the connector's back (emulators/insider/drift.py)."""
        httpx.post(
            f"{self.stack.insider_url}/_emulator/drift", json=drift, timeout=30
        ).raise_for_status()

    def insider_identifiers(self, insider_id: str) -> dict[str, str]:
        """One identifier of the profile (its strongest), to name it by."""
        for user in self.insider_users():
            if user["insider_id"] == insider_id:
                identifiers: dict[str, str] = user["identifiers"]
                kind = next(k for k in ("uuid", "email", "phone_number") if k in identifiers)
                return {kind: identifiers[kind]}
        raise ScenarioFailed(f"no profile {insider_id}")

    def ct_stats(self) -> dict[str, int]:
        stats: dict[str, int] = httpx.get(f"{self.stack.ct_url}/_emulator/stats", timeout=30).json()
        return stats

    def insider_stats(self) -> dict[str, Any]:
        return self.stack.insider_stats()

    def insider_events(self, event_name: str | None = None) -> list[dict[str, Any]]:
        params = {"event_name": event_name} if event_name else {}
        body = httpx.get(
            f"{self.stack.insider_url}/_emulator/events", params=params, timeout=120
        ).json()
        return list(body["events"])

    def insider_users(self) -> list[dict[str, Any]]:
        body = httpx.get(
            f"{self.stack.insider_url}/_emulator/users",
            params={"include_events": "0"},
            timeout=120,
        ).json()
        return list(body["users"])

    def insider_catalog(self) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.stack.insider_url}/_emulator/catalog", timeout=120).json()
        return list(body["items"])

    def worker(
        self, task_queue: str, name: str, env: dict[str, str] | None = None
    ) -> ManagedProcess:
        return worker_process(
            self.stack,
            task_queue,
            name=name,
            env={**self.stack.worker_env(task_queue), **(env or {})},
        )

    @contextmanager
    def running_workers(
        self, task_queue: str, env: dict[str, str] | None = None
    ) -> Iterator[list[ManagedProcess]]:
        """`workers` worker processes on the task queues (the first is the one scenarios
        kill), stopped on the way out."""
        with ExitStack() as stack:
            started = [
                stack.enter_context(self.worker(task_queue, f"worker-{n + 1}", env))
                for n in range(self.workers)
            ]
            yield started


def stored_purchases(suite: Suite) -> Counter[str]:
    """How often Insider holds each purchase, by order number and SKU."""
    return Counter(
        f"{e['event_params']['event_group_id']}/{e['event_params']['product_id']}"
        for e in suite.insider_events("purchase")
    )


def stored_event_keys(suite: Suite) -> Counter[str]:
    """How often Insider holds each event (emulators/insider/events.py)."""
    return held_event_keys(suite.insider_events())


def expected_purchases(orders: list[dict[str, Any]]) -> Counter[str]:
    return Counter(
        f"{order.get('orderNumber') or order['id']}/{line['variant']['sku']}"
        for order in orders
        for line in order["lineItems"]
    )


def kill(process: ManagedProcess) -> None:
    """SIGKILL the process and its children: no shutdown, no flush, mid-request."""
    assert process.process is not None
    os.killpg(process.process.pid, signal.SIGKILL)
    process.process.wait(10)


async def kill_and_restart(
    process: ManagedProcess, after_kill: Callable[[], object] = lambda: None
) -> float:
    """SIGKILL the process (kill), call `after_kill` (e.g. let Insider go on with a request
    it held: stored after its sender died), then start it again off the event loop (what
    the scenario awaits keeps running meanwhile); returns the moment it was killed
    (time.monotonic)."""
    kill(process)
    killed_at = time.monotonic()
    after_kill()
    await asyncio.to_thread(process.start)
    return killed_at


async def wait_for(
    observe: Callable[[], Any],
    within: float,
    *,
    until: Callable[[Any], object] = bool,
    what: str,
    every: float = 0.25,
) -> Any:
    """Poll `observe()` (a function or coroutine function) until `until` holds for what it
    returns; ScenarioFailed after `within` seconds, saying what was awaited and last seen."""
    deadline = time.monotonic() + within
    while True:
        seen = observe()
        observed = await seen if inspect.isawaitable(seen) else seen
        if until(observed):
            return observed
        if time.monotonic() >= deadline:
            raise ScenarioFailed(f"not within {within:g} s: {what}; last seen: {observed!r}")
        await asyncio.sleep(every)


Scenario = Callable[[Suite], Awaitable[Row]]


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| scenario | fault (evidence) | sent | received in Insider | lost | duplicated "
        "| time to recover | bound | result |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        result = "ok" if row.ok else "FAILED: " + "; ".join(row.misses())
        lines.append(
            f"| {row.scenario} | {row.fault} | {row.tally.sent:,} | {row.tally.received:,} "
            f"| {row.tally.lost} | {row.tally.duplicated} | {row.recovery_seconds:.1f} s "
            f"| ≤ {row.bound_seconds:.0f} s ({row.bound_reason}) | {result} |"
        )
    return "\n".join(lines)
