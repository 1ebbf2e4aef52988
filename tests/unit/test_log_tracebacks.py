"""A logged traceback repeats the exception's message: the personal data in it is masked like
the rest of the line, on both paths (our structlog loggers, and standard-library loggers such
as the Temporal SDK's, which logs every failed activity with its traceback)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from ct_insider.logging import configure_logging, get_logger, pii_fingerprint

EMAIL = "jane.doe@example.com"
PHONE = "+4915112345678"


@pytest.fixture(autouse=True)
def _json_logging() -> None:
    configure_logging("INFO", json=True)


def _refuse() -> None:
    raise ValueError(f"Insider refused {EMAIL} {PHONE}")


def _only_line(capsys: pytest.CaptureFixture[str]) -> tuple[str, dict[str, Any]]:
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.strip()]
    return err, json.loads(line)


def _assert_masked_traceback(err: str, line: dict[str, Any]) -> None:
    assert EMAIL not in err
    assert PHONE.removeprefix("+") not in err  # nor its digits without the plus
    # The traceback is there, and its message names the person by fingerprint only
    assert "Traceback (most recent call last)" in line["exception"]
    assert "in _refuse" in line["exception"]
    assert (
        f"ValueError: Insider refused {pii_fingerprint(EMAIL)} {pii_fingerprint(PHONE)}"
        in line["exception"]
    )


def test_a_structlog_exception_line_masks_the_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given an error whose message holds an email and a phone number
    try:
        _refuse()
    except ValueError:
        # When our code logs it with its traceback
        get_logger("tests.tracebacks").exception("sync failed")
    # Then the line's traceback carries fingerprints, never the values
    err, line = _only_line(capsys)
    assert line["event"] == "sync failed"
    _assert_masked_traceback(err, line)


def test_a_standard_library_exception_line_masks_the_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        _refuse()
    except ValueError:
        # When the Temporal SDK's activity logger logs the failure with exc_info
        logging.getLogger("temporalio.activity").exception("Completing activity as failed")
    err, line = _only_line(capsys)
    assert line["logger"] == "temporalio.activity"
    assert line["event"] == "Completing activity as failed"
    _assert_masked_traceback(err, line)
