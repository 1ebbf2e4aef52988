"""The commercetools emulator: our Node launcher around @labdigital/commercetools-mock."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).parent
SERVER = HERE / "server.mjs"
HEAP_LIMIT_MB = 6_144


def ensure_installed() -> None:
    """Install the pinned npm package (package-lock.json) the first time it is needed."""
    if (HERE / "node_modules" / "@labdigital" / "commercetools-mock").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is required for the commercetools emulator (Node 20+)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, check=True)


def command(port: int, project_key: str) -> list[str]:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is required for the commercetools emulator (Node 20+)")
    # Node's default heap limit here (~4 GB) is close to what seeding the 1,000,000-customer
    # bench population peaks at (3.6 GB resident, 2.2 GB once collected; issue 19). A limit,
    # not a reservation: a small data set uses what it needs.
    return [
        node,
        f"--max-old-space-size={HEAP_LIMIT_MB}",
        str(SERVER),
        "--port",
        str(port),
        "--project",
        project_key,
    ]
