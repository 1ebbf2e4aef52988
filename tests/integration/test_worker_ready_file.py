"""The worker's ready file is the container health check (docker-compose.yml, Dockerfile): it
exists only while the worker polls, so a stopped worker or a restarted container that has not
reached Temporal yet is never reported healthy."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from temporalio.client import Client

from ct_insider.codec_keys import generate_key_entry
from emulators.process import ct_insider_command, free_port
from tests.conftest import Emulators, worker_process

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


async def test_ready_file_exists_while_the_worker_polls_and_goes_when_it_stops(
    client: Client, task_queue: str, emulators: Emulators, tmp_path: Path
) -> None:
    # Given a worker that polls both task queues
    worker = worker_process(emulators, client, task_queue, tmp_path, "worker").start()
    assert worker.ready_file is not None
    assert worker.ready_file.read_text() == "ready"

    # When it is stopped the way a container is (SIGTERM)
    worker.stop()

    # Then it shut down cleanly and took its ready file with it
    assert worker.process is not None
    assert worker.process.returncode == 0
    assert not worker.ready_file.exists()


def test_a_restarted_worker_is_not_ready_before_it_reaches_temporal(tmp_path: Path) -> None:
    # Given the ready file of an earlier run (a restarted container keeps its files)
    ready = tmp_path / "worker.ready"
    ready.write_text("ready")

    # When the worker starts while Temporal is unreachable
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("TEMPORAL_")},
        "CTP_PROJECT_KEY": "demo",
        "CTP_CLIENT_ID": "id",
        "CTP_CLIENT_SECRET": "secret",
        "CTP_AUTH_URL": "http://127.0.0.1:9",
        "CTP_API_URL": "http://127.0.0.1:9",
        "INSIDER_PARTNER_NAME": "demo",
        "INSIDER_API_KEY": "key",
        "INSIDER_CATALOG_API_KEY": "key",
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "TEMPORAL_CODEC_KEYS": generate_key_entry("test"),
        "CT_INSIDER_MAPPING_ALLOW_EXAMPLE": "true",  # the demo's rules: it should reach Temporal
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        ct_insider_command("worker", "--ready-file", str(ready)),
        cwd=tmp_path,  # no .env here
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Then it fails as unreachable, and the old file no longer says it is healthy
    assert done.returncode == 3, done.stderr
    assert not ready.exists()
