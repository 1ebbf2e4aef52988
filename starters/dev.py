"""`ct-insider dev` (make run): the whole local stack with a seeded demo, until Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import astuple, dataclass
from pathlib import Path

import httpx

from ct_insider.codec_keys import generate_key_entry
from ct_insider.config import TemporalSettings
from ct_insider.search_attributes import ensure_search_attributes
from ct_insider.temporal import connect
from emulators import commercetools
from emulators.process import ManagedProcess, ct_insider_command, temporal_dev_server_command
from emulators.seed import seed_demo
from emulators.wiring import EmulatorWiring
from starters.backfill import follow, print_report, start_backfill
from starters.delta import DELTA_ENTITIES, start_delta
from workflows.backfill import BackfillInput, BackfillProgress
from workflows.delta import DeltaSyncInput

PROJECT_KEY = "demo"
DEMO_BRIDGE_TOKEN = "demo-bridge-token"  # noqa: S105 - the local demo's, printed for curl


@dataclass(frozen=True)
class Ports:
    temporal: int = 7233
    temporal_ui: int = 8233
    commercetools: int = 8989
    insider: int = 8990
    bridge: int = 8991
    codec_server: int = 8992

    def shifted(self, offset: int) -> Ports:
        return Ports(*(port + offset for port in astuple(self)))


def dev_environment(ports: Ports) -> dict[str, str]:
    """Settings that point the worker at the local emulators (the demo credentials)."""
    wiring = EmulatorWiring(
        f"http://127.0.0.1:{ports.commercetools}",
        f"http://127.0.0.1:{ports.insider}",
        project_key=PROJECT_KEY,
        partner_name="demo",
    )
    return {
        **wiring.environment(f"127.0.0.1:{ports.temporal}", "ct-insider"),
        "BRIDGE_TOKEN": DEMO_BRIDGE_TOKEN,
        "BRIDGE_PORT": str(ports.bridge),
    }


def dev_codec_keys(state_dir: Path) -> str:
    """The dev stack's payload encryption key, generated once and kept with its Temporal
    database (a new key would leave the stored histories unreadable)."""
    path = state_dir / "codec-keys"
    if not path.exists():
        path.write_text(generate_key_entry("dev") + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def _say(message: str) -> None:
    print(f"[ct-insider dev] {message}", flush=True)


def run_dev_stack(state_dir: Path, *, wait: bool = True, port_offset: int = 0) -> int:
    ports = Ports().shifted(port_offset)
    state_dir.mkdir(parents=True, exist_ok=True)
    logs = state_dir / "logs"
    logs.mkdir(exist_ok=True)
    os.environ.update(dev_environment(ports))
    os.environ.setdefault("TEMPORAL_CODEC_KEYS", dev_codec_keys(state_dir))
    commercetools.ensure_installed()
    ready = state_dir / "worker.ready"
    processes = [
        ManagedProcess(
            "temporal",
            temporal_dev_server_command(
                ports.temporal,
                ports.temporal_ui,
                db_file=state_dir / "temporal.db",
                codec_endpoint=f"http://localhost:{ports.codec_server}",
            ),
            health_url=f"http://127.0.0.1:{ports.temporal_ui}/",
            log_path=logs / "temporal.log",
        ),
        ManagedProcess(
            "commercetools emulator",
            commercetools.command(ports.commercetools, PROJECT_KEY),
            health_url=f"http://127.0.0.1:{ports.commercetools}/_emulator/health",
            log_path=logs / "commercetools.log",
        ),
        ManagedProcess(
            "insider emulator",
            ct_insider_command("emulate", "insider", "--port", str(ports.insider)),
            health_url=f"http://127.0.0.1:{ports.insider}/_emulator/health",
            log_path=logs / "insider.log",
        ),
        # The UI shows payloads in clear through it (no token: the dev UI has no sign-in).
        ManagedProcess(
            "codec server",
            ct_insider_command("codec-server"),
            health_url=f"http://127.0.0.1:{ports.codec_server}/healthz",
            log_path=logs / "codec-server.log",
            env={
                "CODEC_SERVER_PORT": str(ports.codec_server),
                "CODEC_SERVER_INSECURE_NO_AUTH": "true",
                "CODEC_SERVER_CORS_ORIGINS": f"http://localhost:{ports.temporal_ui}",
            },
        ),
    ]
    worker = ManagedProcess(
        "worker",
        ct_insider_command("worker", "--ready-file", str(ready)),
        ready_file=ready,
        log_path=logs / "worker.log",
    )
    bridge = ManagedProcess(
        "bridge",
        ct_insider_command("bridge"),
        health_url=f"http://127.0.0.1:{ports.bridge}/healthz",
        log_path=logs / "bridge.log",
    )
    started: list[ManagedProcess] = []

    def request_stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # Explicit handlers: a parent (make, a CI job, `&` in a script) may have left SIGINT ignored.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        for process in processes:
            _say(f"starting {process.name} (log: {process.log_path})")
            started.append(process.start())
        counts = seed_demo(f"http://127.0.0.1:{ports.commercetools}", PROJECT_KEY)
        _say(f"seeded commercetools emulator: {counts}")
        _say(f"starting worker (log: {worker.log_path})")
        started.append(worker.start())
        _say(f"starting bridge (log: {bridge.log_path})")
        started.append(bridge.start())
        final = asyncio.run(_initial_sync())
        print_report(final)
        held = httpx.get(f"http://127.0.0.1:{ports.insider}/_emulator/stats", timeout=10).json()
        _say(
            f"Insider emulator now holds {held['users']} users, {held['events']} events and "
            f"{held['catalog_items']} catalog items"
        )
        _say("the stack is up:")
        _say(
            f"  Temporal UI          http://localhost:{ports.temporal_ui}/namespaces/default/workflows"
        )
        _say(
            f"  Insider emulator     http://127.0.0.1:{ports.insider}/_emulator/users?include_events=0"
        )
        _say(f"                       http://127.0.0.1:{ports.insider}/_emulator/stats")
        _say(
            f"  commercetools emu    http://127.0.0.1:{ports.commercetools}/{PROJECT_KEY}/customers (OAuth at /oauth/token)"
        )
        _say(
            f"  webhook bridge       http://127.0.0.1:{ports.bridge}/docs (token {DEMO_BRIDGE_TOKEN})"
        )
        _say(
            f"  codec server         http://127.0.0.1:{ports.codec_server}/healthz (the UI "
            f"decrypts payloads through it; key in {state_dir}/codec-keys)"
        )
        _say(f"  logs                 {logs}/")
        _say("try a storefront event (it reaches the Insider emulator within a second):")
        _say(
            f"  curl -s -X POST http://127.0.0.1:{ports.bridge}/events "
            f"-H 'Authorization: Bearer {DEMO_BRIDGE_TOKEN}' -H 'Content-Type: application/json' "
            """-d '{"event_id":"demo-1","type":"product_view","occurred_at":"2026-01-01T00:00:00Z","""
            """"identity":{"anonymous_id":"visitor-1"},"sku":"SKU-00000-S"}'"""
        )
        if not wait:
            return 0
        _say("press Ctrl-C to stop everything")
        while True:
            for process in started:
                if process.process is not None and process.process.poll() is not None:
                    _say(f"{process.name} exited unexpectedly; see {process.log_path}")
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    finally:
        _say("stopping")
        for process in reversed(started):
            process.stop()


async def _initial_sync() -> BackfillProgress:
    """Backfill customers and orders, then keep them current with the delta workflows (each
    starts where its backfill started reading: the watermark the completed backfill left)."""
    settings = TemporalSettings()
    client = await connect(settings)
    added = await ensure_search_attributes(client, settings.namespace)
    if added:
        _say(f"registered search attributes: {', '.join(added)}")
    handle = await start_backfill(client, settings.task_queue, BackfillInput(target="all"))
    _say(f"initial backfill: workflow {handle.id}")
    final = await follow(handle, out=sys.stdout)
    catalog = await start_backfill(client, settings.task_queue, BackfillInput(target="catalog"))
    _say(f"full catalog sync (3 markets): workflow {catalog.id}")
    print_report(await follow(catalog, out=sys.stdout))
    for entity in DELTA_ENTITIES:
        delta = await start_delta(
            client, settings.task_queue, DeltaSyncInput(entity=entity, interval_seconds=10.0)
        )
        _say(f"{entity} delta sync every 10 s: workflow {delta.id}")
    return final
