"""Secrets and raw PII never reach a log line."""

from __future__ import annotations

import io
import json
import sys

import pytest
import structlog

from ct_insider.logging import configure_logging, pii_fingerprint, redact


def test_redact_masks_secrets_and_fingerprints_pii() -> None:
    event = {
        "event": "x",
        "token": "abc",
        "email": "jane@example.com",
        "nested": {"phone_number": "+15035551234", "customer_id": "c-1"},
    }
    out = redact(event)
    assert out["token"] == "***"
    assert out["email"] == pii_fingerprint("jane@example.com")
    assert out["nested"]["phone_number"].startswith("pii:")
    assert out["nested"]["customer_id"] == "c-1"


def test_configured_logger_writes_no_raw_pii(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json=True)
    structlog.get_logger("t").warning(
        "customer dropped", email="jane@example.com", client_secret="s3cr3t"
    )
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert "jane@example.com" not in line
    assert "s3cr3t" not in line
    assert record["email"] == pii_fingerprint("jane@example.com")


def test_log_lines_follow_the_current_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a logger first used while stderr was a stream that has since been closed
    stale = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stale)
    configure_logging("INFO", json=True)
    logger = structlog.get_logger("follows-stderr")
    logger.warning("first")
    stale.close()
    # When stderr is another stream now, logging neither fails nor writes to the old one
    fresh = io.StringIO()
    monkeypatch.setattr(sys, "stderr", fresh)
    logger.warning("second")
    assert json.loads(fresh.getvalue().strip())["event"] == "second"
