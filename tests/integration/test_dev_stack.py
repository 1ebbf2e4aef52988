"""`make run` acceptance: `ct-insider dev` brings up the stack and completes the demo backfill."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_dev_stack_completes_the_demo_backfill_within_90_seconds(tmp_path: Path) -> None:
    started = time.monotonic()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "starters.cli",
            "dev",
            "--no-wait",
            "--state-dir",
            str(tmp_path),
            "--port-offset",
            "20000",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    elapsed = time.monotonic() - started
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "customers backfill completed: processed 200, sent 200, skipped 0" in output
    assert "orders backfill completed: processed 300, sent 300, skipped 0" in output
    # 200 customers plus the 60 guest shoppers (every fifth seeded order is a guest's)
    assert "Insider emulator now holds 260 users, 598 events and 900 catalog items" in output
    assert "delta sync every 10 s: workflow delta-orders" in output
    assert "webhook bridge       http://127.0.0.1:28991/docs" in output
    assert elapsed < 90, f"took {elapsed:.0f}s"
    # Temporal's state lives in a file under the state folder, so it survives restarts.
    assert (tmp_path / "temporal.db").stat().st_size > 0
