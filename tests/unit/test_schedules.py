"""The schedules configuration and the plan from what exists to what it asks for (pure)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import ScheduleActionStartWorkflow, ScheduleOverlapPolicy

from ct_insider.schedules import (
    DEFAULT_SCHEDULES,
    DesiredSchedule,
    ScheduleConfig,
    ScheduleConfigError,
    desired,
    load_configs,
    parse,
    plan,
)
from starters.schedules import MEMO_KEY, build_schedule, validate_inputs

PREFIX = "ct-insider-"


def wanted(*configs: ScheduleConfig) -> list[DesiredSchedule]:
    return desired(configs, prefix=PREFIX, task_queue="ct-insider")


def check(name: str, cron: str = "0 2 * * *", **fields: Any) -> ScheduleConfig:
    return ScheduleConfig.model_validate(
        {"name": name, "kind": "check-customers", "cron": cron, **fields}
    )


def test_the_defaults_are_a_daily_check_per_entity_and_a_nightly_catalog_reconciliation() -> None:
    schedules = {s.id: s for s in desired(load_configs(None), prefix=PREFIX, task_queue="q")}

    assert sorted(schedules) == [
        "ct-insider-catalog-reconciliation",
        "ct-insider-check-catalog",
        "ct-insider-check-customers",
        "ct-insider-check-orders",
    ]
    checks = [s for s in schedules.values() if s.workflow == "ConsistencyCheckWorkflow"]
    assert sorted(s.workflow_input["entity"] for s in checks) == ["catalog", "customers", "orders"]
    assert len({s.cron for s in checks}) == 3  # staggered hours
    reconciliation = schedules["ct-insider-catalog-reconciliation"]
    assert reconciliation.workflow == "BackfillWorkflow"
    assert reconciliation.workflow_input == {"target": "catalog", "catalog_mode": "changes"}


def test_a_fresh_namespace_gets_every_schedule_created() -> None:
    steps = plan(wanted(check("a"), check("b")), {}, prefix=PREFIX)

    assert [(s.id, s.action) for s in steps] == [
        ("ct-insider-a", "create"),
        ("ct-insider-b", "create"),
    ]


def test_schedules_whose_fingerprint_matches_are_unchanged() -> None:
    schedules = wanted(check("a"), check("b"))
    existing = {s.id: s.fingerprint for s in schedules}

    assert {s.action for s in plan(schedules, existing, prefix=PREFIX)} == {"unchanged"}


def test_a_changed_definition_is_updated_and_a_dropped_one_deleted() -> None:
    before = wanted(check("a"), check("b"), check("c"))
    existing = {s.id: s.fingerprint for s in before}
    after = wanted(check("a"), check("b", cron="0 5 * * *"))

    steps = {s.id: s.action for s in plan(after, existing, prefix=PREFIX)}

    assert steps == {
        "ct-insider-a": "unchanged",
        "ct-insider-b": "update",
        "ct-insider-c": "delete",
    }


@pytest.mark.parametrize(
    "change",
    [
        {"cron": "0 6 * * *"},
        {"jitter_seconds": 10},
        {"catch_up_window_seconds": 60},
        {"paused": True},
        {"input": {"sample": 50}},
    ],
)
def test_every_part_of_a_schedule_changes_its_fingerprint(change: dict[str, Any]) -> None:
    [original] = wanted(check("a"))
    [changed] = wanted(check("a", **change))

    assert changed.fingerprint != original.fingerprint


def test_a_schedule_of_ours_without_a_fingerprint_is_updated() -> None:
    steps = plan(wanted(check("a")), {"ct-insider-a": None}, prefix=PREFIX)

    assert [s.action for s in steps] == ["update"]


def test_schedules_outside_the_prefix_are_left_alone() -> None:
    existing = {"someone-else": "x", "ct-insider-staging-a": "y"}

    steps = plan(
        desired([check("a")], prefix="ct-insider-prod-", task_queue="q"),
        existing,
        prefix="ct-insider-prod-",
    )

    assert [(s.id, s.action) for s in steps] == [("ct-insider-prod-a", "create")]


def test_a_file_replaces_and_omits_defaults_and_adds_backfill_windows(tmp_path: Path) -> None:
    path = tmp_path / "schedules.json"
    path.write_text(
        json.dumps(
            {
                "omit": ["check-orders"],
                "schedules": [
                    {"name": "check-customers", "kind": "check-customers", "cron": "0 5 * * *"},
                    {
                        "name": "backfill-2025",
                        "kind": "backfill",
                        "cron": "0 0 1 1 *",
                        "paused": True,
                        "input": {"target": "all", "window": {"since": "2025-01-01T00:00:00Z"}},
                    },
                ],
            }
        )
    )

    configs = {c.name: c for c in load_configs(path)}

    assert sorted(configs) == [
        "backfill-2025",
        "catalog-reconciliation",
        "check-catalog",
        "check-customers",
    ]
    assert configs["check-customers"].cron == "0 5 * * *"
    assert configs["backfill-2025"].paused


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{", "not JSON (line 1"),
        ('{"schedules": [{"name": "a", "kind": "check-orders"}]}', "exactly one of cron"),
        (
            '{"schedules": [{"name": "a", "kind": "check-orders", "cron": "daily"}]}',
            "needs 5 fields",
        ),
        (
            '{"schedules": [{"name": "A b", "kind": "check-orders", "cron": "@daily"}]}',
            "schedules.0.name",
        ),
        (
            '{"schedules": [{"name": "a", "kind": "check-orders", "every_seconds": 5, '
            '"input": {"entity": "customers"}}]}',
            "input.entity is 'orders'",
        ),
        ('{"schedules": [{"name": "a", "kind": "backfill", "every_seconds": 5}]}', "input.target"),
        ('{"omit": ["check-everything"]}', "omit names no default schedule: check-everything"),
        ('{"schedulez": []}', "schedulez: Extra inputs are not permitted"),
        (
            '{"schedules": [{"name": "a", "kind": "check-orders", "every_seconds": 5}, '
            '{"name": "a", "kind": "check-orders", "every_seconds": 6}]}',
            "given twice: a",
        ),
    ],
)
def test_an_invalid_configuration_is_refused_with_a_precise_message(
    document: str, message: str
) -> None:
    with pytest.raises(ScheduleConfigError) as refused:
        parse(document, "schedules.json")

    assert message in str(refused.value)
    assert str(refused.value).startswith("schedules.json: ")


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScheduleConfigError, match="cannot read"):
        load_configs(tmp_path / "absent.json")


def test_defaults_are_valid_configurations() -> None:
    assert all(ScheduleConfig.model_validate(s.model_dump()) == s for s in DEFAULT_SCHEDULES)


def test_a_schedule_is_built_with_skip_overlap_catch_up_jitter_and_its_fingerprint() -> None:
    [schedule] = wanted(check("a", jitter_seconds=30, catch_up_window_seconds=600, paused=True))

    built = build_schedule(schedule)

    assert built.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert built.policy.catchup_window == timedelta(minutes=10)
    assert built.spec.jitter == timedelta(seconds=30)
    assert list(built.spec.cron_expressions) == ["0 2 * * *"]
    assert built.state.paused
    action = built.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (action.workflow, action.id, action.task_queue) == (
        "ConsistencyCheckWorkflow",
        "ct-insider-a",
        "ct-insider",
    )
    assert list(action.args) == [{"entity": "customers"}]
    assert action.memo == {
        MEMO_KEY: {
            "fingerprint": schedule.fingerprint,
            "kind": "check-customers",
            "spec": "cron 0 2 * * *",
        }
    }


def test_an_interval_schedule_is_built_with_its_interval() -> None:
    [schedule] = wanted(
        ScheduleConfig(name="r", kind="catalog-reconciliation", every_seconds=90, jitter_seconds=0)
    )

    built = build_schedule(schedule)

    assert [i.every for i in built.spec.intervals] == [timedelta(seconds=90)]
    assert not built.spec.cron_expressions


def test_a_workflow_input_its_workflow_refuses_is_a_configuration_error() -> None:
    bad = ScheduleConfig(
        name="backfill-2025",
        kind="backfill",
        cron="@daily",
        input={"target": "orders", "batch_size": 5000},
    )

    with pytest.raises(ScheduleConfigError, match=r"ct-insider-backfill-2025: input.batch_size"):
        validate_inputs(wanted(bad))


def test_the_defaults_inputs_are_accepted_by_their_workflows() -> None:
    validate_inputs(desired(load_configs(None), prefix=PREFIX, task_queue="q"))


def test_a_check_input_the_check_workflow_refuses_is_a_configuration_error() -> None:
    bad = ScheduleConfig(name="c", kind="check-orders", cron="@daily", input={"sample": 0})

    with pytest.raises(ScheduleConfigError, match=r"ct-insider-c: input.sample"):
        validate_inputs(wanted(bad))
