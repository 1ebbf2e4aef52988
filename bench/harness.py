"""What every benchmark needs: its own servers on 127.0.0.1, a worker process, RSS sampling,
the machine's description and a results file. Benchmarks run with `make bench`, never in
the test suite."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from ct_insider.codec_keys import generate_key_entry
from emulators import commercetools
from emulators.process import (
    ManagedProcess,
    ct_insider_command,
    free_port,
    temporal_dev_server_command,
)
from emulators.seed import CommercetoolsSeeder
from emulators.wiring import EmulatorWiring

RESULTS = Path(__file__).parent / "results"
PROJECT_KEY = "bench"


@dataclass(frozen=True)
class Stack(EmulatorWiring):
    temporal_address: str = ""
    # The dev server's Prometheus endpoint (its `action` counter), when we started it.
    temporal_metrics_url: str | None = None
    logs: Path = Path(".dev/bench-logs")
    # Server processes by name, for CPU accounting.
    servers: dict[str, ManagedProcess] = field(default_factory=dict)

    def seeder(self) -> CommercetoolsSeeder:
        return CommercetoolsSeeder(self.ct_url, self.project_key)

    def reset_insider(self) -> None:
        httpx.post(f"{self.insider_url}/_emulator/reset", timeout=60).raise_for_status()

    def insider_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.insider_url}/_emulator/stats", timeout=60).json()
        return stats

    def ct_scanned(self) -> int:
        """Stored objects the commercetools emulator has evaluated query predicates on."""
        stats = httpx.get(f"{self.ct_url}/_emulator/stats", timeout=60).json()
        return int(stats.get("scanned", 0))

    def worker_env(self, task_queue: str) -> dict[str, str]:
        return self.environment(self.temporal_address, task_queue)


@contextmanager
def local_stack(
    logs: Path, temporal_address: str | None = None, temporal_db: Path | None = None
) -> Iterator[Stack]:
    """Both emulators on free loopback ports, and a Temporal dev server (in memory, or in the
    SQLite file `temporal_db`, made afresh) unless `temporal_address` names a Temporal server
    elsewhere (the production shape: the connector's processes then have the machine to
    themselves)."""
    logs.mkdir(parents=True, exist_ok=True)
    # Encrypted like production (ct_insider/codec.py); the processes started here inherit it.
    os.environ.setdefault("TEMPORAL_CODEC_KEYS", generate_key_entry("bench"))
    commercetools.ensure_installed()
    temporal_port, ui_port, ct_port, insider_port = (free_port() for _ in range(4))
    servers = [
        ManagedProcess(
            "commercetools emulator",
            commercetools.command(ct_port, PROJECT_KEY),
            health_url=f"http://127.0.0.1:{ct_port}/_emulator/health",
            log_path=logs / "commercetools.log",
        ),
        ManagedProcess(
            "insider emulator",
            ct_insider_command(
                "emulate", "insider", "--port", str(insider_port), "--partner-name", "bench"
            ),
            health_url=f"http://127.0.0.1:{insider_port}/_emulator/health",
            log_path=logs / "insider.log",
        ),
    ]
    metrics_url = None
    if temporal_address is None:
        temporal_address = f"127.0.0.1:{temporal_port}"
        metrics_port = free_port()
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        if temporal_db is not None:
            for stale in temporal_db.parent.glob(f"{temporal_db.name}*"):
                stale.unlink()
        dev_server = temporal_dev_server_command(
            temporal_port,
            ui_port,
            headless=True,
            metrics_port=metrics_port,
            db_file=temporal_db,
            # What is measured is the store's size, not this disk's syncs (a rollback journal
            # synced per transaction took 17 workflow starts a second here, not 40).
            sqlite_pragmas=("journal_mode=wal", "synchronous=off"),
        )
        servers.insert(0, ManagedProcess("temporal", dev_server, log_path=logs / "temporal.log"))
    with ExitStack() as stack:
        for server in servers:
            stack.enter_context(server)
        yield Stack(
            f"http://127.0.0.1:{ct_port}",
            f"http://127.0.0.1:{insider_port}",
            project_key=PROJECT_KEY,
            partner_name="bench",
            temporal_address=temporal_address,
            temporal_metrics_url=metrics_url,
            logs=logs,
            servers={server.name: server for server in servers},
        )


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


class PeakRss:
    """Samples a process tree's resident memory in the background; keeps the peak. Each
    sample walks /proc, so it is taken 4 times a second, not more: the sampler shares the
    cores being measured."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self._process = psutil.Process(pid)
        self._interval = interval
        self.peak_bytes = 0
        self._task: asyncio.Task[None] | None = None

    def _sample(self) -> None:
        try:
            tree = process_tree(self._process.pid)
            self.peak_bytes = max(self.peak_bytes, sum(p.memory_info().rss for p in tree))
        except psutil.Error:
            pass

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(self._interval)

    def __enter__(self) -> PeakRss:
        self._task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        self._sample()
        if self._task is not None:
            self._task.cancel()

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20


class CpuSeconds:
    """CPU time (user + system) each named process tree spends inside the block: shows
    where the cores went when everything shares one machine."""

    def __init__(self, processes: dict[str, ManagedProcess]) -> None:
        self._processes = processes
        self._before: dict[str, float] = {}
        self._own = 0.0
        self.spent: dict[str, float] = {}

    @staticmethod
    def _cpu(process: ManagedProcess) -> float:
        if process.process is None:
            return 0.0
        try:
            tree = process_tree(process.process.pid)
            return sum(p.cpu_times().user + p.cpu_times().system for p in tree)
        except psutil.Error:
            return 0.0

    @staticmethod
    def _own_cpu() -> float:
        times = psutil.Process().cpu_times()
        return float(times.user + times.system)

    def __enter__(self) -> CpuSeconds:
        self._before = {name: self._cpu(p) for name, p in self._processes.items()}
        self._own = self._own_cpu()
        return self

    def __exit__(self, *_: object) -> None:
        self.spent = {
            name: round(self._cpu(p) - self._before[name], 2) for name, p in self._processes.items()
        }
        self.spent["benchmark client"] = round(self._own_cpu() - self._own, 2)


# The bridges the benchmarks start take this token.
BRIDGE_TOKEN = "bench-bridge-token-0123456789"


def bridge_process(
    stack: Stack, env: dict[str, str], port: int, log_name: str = "bridge"
) -> ManagedProcess:
    """A `ct-insider bridge` process on `port` with the worker's `env` (healthy once it
    answers /healthz)."""
    return ManagedProcess(
        "bridge",
        ct_insider_command("--log-level", "WARNING", "bridge"),
        health_url=f"http://127.0.0.1:{port}/healthz",
        env={**env, "BRIDGE_TOKEN": BRIDGE_TOKEN, "BRIDGE_PORT": str(port)},
        log_path=stack.logs / f"{log_name}.log",
    )


def worker_process(
    stack: Stack, task_queue: str, name: str = "worker", env: dict[str, str] | None = None
) -> ManagedProcess:
    """A `ct-insider worker` process wired to the stack (ready once it polls its queue)."""
    ready = stack.logs / f"{name}.ready"
    return ManagedProcess(
        name,
        ct_insider_command("--log-level", "WARNING", "worker", "--ready-file", str(ready)),
        ready_file=ready,
        env=env or stack.worker_env(task_queue),
        log_path=stack.logs / f"{name}.log",
    )


def speed_probe() -> float:
    """Seconds for a fixed pure-Python loop: this shared machine's speed varies up to 4x
    within an hour, so every result carries it (lower is faster)."""
    started = time.perf_counter()
    total = 0
    for i in range(5_000_000):
        total += i
    return round(time.perf_counter() - started, 3)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "system": platform.platform(),
        "speed_probe_seconds": speed_probe(),
    }


def save(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps({"machine": machine(), **result}, indent=2) + "\n")
    return path


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def delivery_figures(
    sent_at: list[float | None],
    delivered_at: list[float | None],
    seconds: float,
    cpu: CpuSeconds,
) -> dict[str, Any]:
    """Rates, latencies and CPU per event of a realtime run, from when each event was sent
    (posted; None if the bridge did not accept it) and first delivered (unix seconds, None
    if never), in the order they were sent."""
    pairs = list(zip(sent_at, delivered_at, strict=True))
    latency = [d - a if a is not None and d is not None else None for a, d in pairs]
    known = [x for x in latency if x is not None]
    accepted = [a for a in sent_at if a is not None]
    last = max((d for d in delivered_at if d is not None), default=0.0)
    # When in the run slow deliveries happen (creation of the journeys vs steady state).
    tenth = max(1, len(latency) // 10)
    by_tenth = []
    for start in range(0, len(latency), tenth):
        part = [x for x in latency[start : start + tenth] if x is not None]
        by_tenth.append(round(percentile(part, 0.99), 2) if part else None)
    return {
        "posting_seconds": round(seconds, 2),
        "accepted_per_second": round(len(accepted) / seconds, 1),
        "delivered_per_second": round(
            len(accepted) / max(1e-9, last - min(accepted, default=0)), 1
        ),
        **{
            f"latency_{name}": round(percentile(known, share), 3) if known else None
            for name, share in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
        },
        "latency_mean": round(statistics.mean(known), 3) if known else None,
        "latency_p99_by_tenth_of_run": by_tenth,
        "cpu_seconds": cpu.spent,
        "cpu_ms_per_event": {
            name: round(1000 * spent / len(pairs), 2) for name, spent in cpu.spent.items()
        },
    }
