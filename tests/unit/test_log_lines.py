"""Every log line, ours and the libraries', is one JSON object with the Temporal context
bound and personal data masked."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import pytest
import structlog
from temporalio import activity
from temporalio.testing import ActivityEnvironment
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput

from activities.log_context import LogContextInterceptor
from ct_insider.logging import configure_logging, get_logger, pii_fingerprint
from ct_insider.temporal import CORE_LOG_FORWARDING

EMAIL = "jane.doe@example.com"


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    # Every line must parse: a plain-text line from a library would fail here.
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def _json_logging() -> None:
    configure_logging("INFO", json=True)


def test_standard_library_lines_from_uvicorn_and_temporalio_are_json_with_pii_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # When uvicorn and the Temporal SDK log through the standard library
    logging.getLogger("uvicorn.error").warning("request from %s failed", EMAIL)
    logging.getLogger("temporalio.worker._workflow").info("worker poll for %s", "queue-1")
    # Then each comes out as one JSON object with level, logger and timestamp, email masked
    uvicorn, temporal = _lines(capsys)
    assert uvicorn["logger"] == "uvicorn.error"
    assert uvicorn["level"] == "warning"
    assert uvicorn["event"] == f"request from {pii_fingerprint(EMAIL)} failed"
    assert "timestamp" in uvicorn
    assert temporal["logger"] == "temporalio.worker._workflow"
    assert temporal["event"] == "worker poll for queue-1"


async def test_lines_written_in_an_activity_carry_its_workflow_run_activity_and_entity(
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info,
        workflow_id="backfill-customers-2026",
        workflow_run_id="run-7",
        activity_type="sync_chunk",
    )

    @dataclasses.dataclass
    class Chunk:
        entity: str

    async def sync_chunk(params: Chunk) -> None:
        get_logger("ct_insider.sync").warning("customer skipped", reason=f"no uuid for {EMAIL}")
        activity.logger.info("sent batch to %s", EMAIL)  # the SDK's adapter: stdlib + extras

    class Run(ActivityInboundInterceptor):
        async def execute_activity(self, input: ExecuteActivityInput) -> Any:
            return await input.fn(*input.args)

    async def run_intercepted() -> None:
        bound = LogContextInterceptor().intercept_activity(Run(None))  # type: ignore[arg-type]
        await bound.execute_activity(
            ExecuteActivityInput(
                fn=sync_chunk, args=[Chunk("customers")], executor=None, headers={}
            )
        )

    # When our logger and the SDK's activity logger write inside the activity
    await env.run(run_intercepted)
    ours, sdk = _lines(capsys)
    # Then both carry the workflow id, run id and activity type; ours the entity too
    for line in (ours, sdk):
        assert line["workflow_id"] == "backfill-customers-2026"
        assert line["run_id"] == "run-7"
        assert line["activity"] == "sync_chunk"
        assert EMAIL not in json.dumps(line)
    assert ours["entity"] == "customers"
    assert ours["logger"] == "ct_insider.sync"
    assert ours["reason"] == f"no uuid for {pii_fingerprint(EMAIL)}"
    assert sdk["logger"] == "temporalio.activity"
    # And the binding ended with the activity
    structlog.get_logger("after").warning("outside")
    [after] = _lines(capsys)
    assert "entity" not in after
    assert "workflow_id" not in after


def test_identifiers_are_not_garbled_by_the_phone_masking(
    capsys: pytest.CaptureFixture[str],
) -> None:
    customer_id = "5b9e1234-5678-4d2a-9b7e-123456789012"
    get_logger("ids").info("customer synced", customer_id=customer_id, cursor=customer_id)
    [line] = _lines(capsys)
    assert line["customer_id"] == customer_id
    assert line["cursor"] == customer_id


@dataclasses.dataclass
class CoreLine:
    """A line of the SDK's core, as its log forwarding buffers it."""

    message: str
    fields: dict[str, Any]
    target: str = "temporalio_common::payload_limits"
    time: float = 0.0
    level: int = logging.WARNING


def test_a_core_line_keeps_its_numbers_and_masks_its_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # When the SDK's core warns about a payload's size (as continue-as-new of a busy shard
    # does), and another core line names an email
    CORE_LOG_FORWARDING._on_logs(
        [
            CoreLine(
                "[TMPRL1103] Attempted to upload payloads with size that exceeded the "
                "warning limit.",
                {"limit": 524288, "size": 1461124},
            ),
            CoreLine("poll failed", {"reason": f"unknown user {EMAIL}"}),
        ]
    )
    # Then the size and the limit are fields, as numbers, not masked as phone numbers
    sizes, other = _lines(capsys)
    assert sizes["event"].endswith("exceeded the warning limit.")
    assert (sizes["size"], sizes["limit"]) == (1461124, 524288)
    assert sizes["logger"].startswith("temporalio.core")
    # And personal data in a core line's text is still masked
    assert other["reason"] == f"unknown user {pii_fingerprint(EMAIL)}"
