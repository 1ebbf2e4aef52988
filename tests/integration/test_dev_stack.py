"""`make run` acceptance: `ct-insider dev` brings up the stack and completes the demo backfill."""

from __future__ import annotations

import random
from dataclasses import astuple
from pathlib import Path

import pytest

from emulators.process import ManagedProcess, ct_insider_command, free_port
from starters.dev import Ports

pytestmark = pytest.mark.integration


def free_port_offset() -> int:
    """An offset that puts every port of the stack on a free port (each kept for a minute,
    see free_port), below the kernel's ephemeral range: so this test may run next to
    another developer's `make run` or a second run of itself."""
    for offset in random.sample(range(1_000, 23_000), 100):
        try:
            for port in astuple(Ports().shifted(offset)):
                free_port(port)
        except OSError:
            continue
        return offset
    raise AssertionError("no free ports for the dev stack")


def test_dev_stack_completes_the_demo_backfill(tmp_path: Path) -> None:
    offset = free_port_offset()
    dev = ManagedProcess(
        "ct-insider dev",
        ct_insider_command(
            "dev", "--no-wait", "--state-dir", str(tmp_path), "--port-offset", str(offset)
        ),
        log_path=tmp_path / "dev.log",
    )
    try:
        dev.start()
        assert dev.process is not None
        status = dev.process.wait(timeout=600)  # a guard against a hang, not a time bound
    finally:
        # Not a SIGKILL: `ct-insider dev` stops the servers it started on SIGTERM, which a
        # SIGKILL would leave running, holding their ports.
        dev.stop(timeout=120)
    output = (tmp_path / "dev.log").read_text()
    assert status == 0, output
    assert "customers backfill completed: processed 200, sent 200, skipped 0" in output
    assert "orders backfill completed: processed 300, sent 300, skipped 0" in output
    # 200 customers plus the 60 guest shoppers (every fifth seeded order is a guest's)
    assert "Insider emulator now holds 260 users, 598 events and 900 catalog items" in output
    assert "delta sync every 10 s: workflow delta-orders" in output
    bridge = Ports().shifted(offset).bridge
    assert f"webhook bridge       http://127.0.0.1:{bridge}/docs" in output
    # Temporal's state lives in a file under the state folder, so it survives restarts.
    assert (tmp_path / "temporal.db").stat().st_size > 0
