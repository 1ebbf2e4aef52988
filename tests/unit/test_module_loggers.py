"""A module's logger is created at import (`log = get_logger(__name__)`), before the command
configures logging: its lines must still be JSON on stderr with personal data masked."""

from __future__ import annotations

import json
import subprocess
import sys

EMAIL = "jane.doe@example.com"

PROBE = f"""
from ct_insider.logging import configure_logging, get_logger
log = get_logger("starters.some_command")  # at import, as every module does
configure_logging("INFO", json=True)       # later, in main()
log.info("request from {EMAIL}", email={EMAIL!r})
"""


def test_a_logger_made_before_logging_is_configured_follows_the_configuration() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == ""  # not structlog's default console lines on stdout
    [line] = [json.loads(text) for text in result.stderr.splitlines()]
    assert line["logger"] == "starters.some_command"
    assert line["event"].startswith("request from pii:")
    assert line["email"].startswith("pii:")
    assert EMAIL not in result.stderr
