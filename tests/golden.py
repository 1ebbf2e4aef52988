"""Golden files: compare a mapping's output with a reviewed expected file.

Regenerate after reviewing a change: UPDATE_GOLDEN=1 pytest tests/unit
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def cases(folder: Path) -> list[str]:
    return sorted(p.name.removesuffix(".input.json") for p in folder.glob("*.input.json"))


def given(folder: Path, case: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((folder / f"{case}.input.json").read_text())
    return loaded


def assert_matches_golden(folder: Path, case: str, actual: dict[str, Any]) -> None:
    expected_path = folder / f"{case}.expected.json"
    if os.environ.get("UPDATE_GOLDEN"):
        expected_path.write_text(
            json.dumps(actual, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        )
    assert actual == json.loads(expected_path.read_text())
