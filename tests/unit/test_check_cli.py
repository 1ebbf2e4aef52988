"""`ct-insider check`: arguments, the printed drift report, and its exit code."""

from __future__ import annotations

import pytest

from ct_insider.checks.drift import DriftReport, FieldDrift, RecordDrift
from ct_insider.logging import pii_fingerprint
from starters.check import outcome, print_report, run_check
from starters.cli import _parser
from starters.output import ExitCode


def test_arguments_map_to_the_check_input() -> None:
    args = _parser().parse_args(
        ["check", "orders", "--sample", "5", "--since", "2026-01-01T00:00:00Z", "--repair"]
    )
    assert args.handler is run_check
    assert (args.entity, args.sample, args.all, args.repair, args.wait) == (
        "orders",
        5,
        False,
        True,
        False,
    )
    assert args.since.isoformat() == "2026-01-01T00:00:00+00:00"


def test_sample_and_all_exclude_each_other() -> None:
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(["check", "customers", "--sample", "5", "--all"])
    assert exited.value.code == 2


def drifted_report() -> DriftReport:
    report = DriftReport(entity="customers", source="insider-profile-api", sampled=3, checked=3)
    report.add(RecordDrift(kind="missing", record_id="c-1", detail="no profile in Insider"))
    report.add(
        RecordDrift(
            kind="stale", record_id="c-2", fields=[FieldDrift.of("email", "a@x.io", "b@x.io")]
        )
    )
    return report


def test_the_report_prints_drift_without_personal_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_report(drifted_report())
    out = capsys.readouterr().out
    assert "c-1" in out
    assert "no profile in Insider" in out
    assert pii_fingerprint("a@x.io") in out
    assert "a@x.io" not in out
    assert "b@x.io" not in out


def test_exit_code_is_1_while_drift_is_left() -> None:
    report = drifted_report()
    assert outcome(report) == ExitCode.FAILURES
    report.repaired = 2
    assert outcome(report) == ExitCode.OK
    assert outcome(DriftReport(entity="orders", source="insider-profile-api")) == ExitCode.OK
