"""The example mapping rules never reach a live Insider account: the worker and `setup
insider` refuse them (the built-in defaults, a file marked `"example": true`, catalog links to
a reserved example domain) unless CT_INSIDER_MAPPING_ALLOW_EXAMPLE opts in, as the dev stack
and the tests do. doctor's verdicts are checked in tests/integration/test_setup_and_doctor.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ct_insider.mapping.config import (
    MappingConfigError,
    example_reasons,
    load_mapping_config,
    operator_mapping,
)
from starters.cli import main
from starters.mapping_rules import mapping_rules

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "ct-insider" / "mapping.example.json"


def _operators_rules(tmp_path: Path, **changes: object) -> Path:
    """The example made the operator's own: marker gone, their shop's links."""
    rules = json.loads(EXAMPLE.read_text())
    rules.pop("example")
    rules["catalog"]["url_template"] = "https://www.shop-retailer.de/{language}/p/{slug}"
    rules.update(changes)
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps(rules))
    return path


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> None:
    """A production process's environment: settings filled in, no opt-in to the example."""
    for name, value in {
        "CTP_PROJECT_KEY": "shop",
        "CTP_CLIENT_ID": "id",
        "CTP_CLIENT_SECRET": "secret",
        "CTP_AUTH_URL": "http://127.0.0.1:9",
        "CTP_API_URL": "http://127.0.0.1:9",
        "INSIDER_PARTNER_NAME": "shop",
        "INSIDER_API_KEY": "ucd",
        "INSIDER_CATALOG_API_KEY": "catalog",
        "TEMPORAL_ADDRESS": "127.0.0.1:9",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("CT_INSIDER_MAPPING_ALLOW_EXAMPLE", "CT_INSIDER_MAPPING_PATH"):
        monkeypatch.delenv(name, raising=False)


def test_the_example_in_every_form_is_refused_and_the_operators_rules_are_not(
    tmp_path: Path,
) -> None:
    # Given the built-in defaults, the shipped example file, and that file with only its
    # marker removed
    unmarked = _operators_rules(tmp_path)
    unmarked_rules = json.loads(unmarked.read_text())
    unmarked_rules["catalog"]["url_template"] = "https://shop.example.com/{language}/p/{slug}"
    still_example = tmp_path / "unmarked.json"
    still_example.write_text(json.dumps(unmarked_rules))
    # Then each is refused, saying why and what to do
    for path, reason in (
        (None, "no mapping file was given"),
        (EXAMPLE, '"example": true'),
        (still_example, "shop.example.com, a reserved example domain"),
    ):
        with pytest.raises(MappingConfigError) as refused:
            operator_mapping(path, allow_example=False)
        message = str(refused.value)
        assert reason in message
        assert "CT_INSIDER_MAPPING_PATH" in message
        assert "CT_INSIDER_MAPPING_ALLOW_EXAMPLE=true" in message
        # And with the opt-in they load, known as the example
        config, example = operator_mapping(path, allow_example=True)
        assert example is True
        assert example_reasons(config, path)
    # And the operator's own rules load, not the example
    config, example = operator_mapping(_operators_rules(tmp_path), allow_example=False)
    assert example is False
    assert config.catalog.url_template.startswith("https://www.shop-retailer.de/")


def test_a_missing_rules_file_names_the_example_to_start_from(tmp_path: Path) -> None:
    with pytest.raises(MappingConfigError, match=r"mapping\.example\.json shows every rule"):
        load_mapping_config(tmp_path / "mapping.json")


def test_the_path_setting_stands_in_for_mapping(
    production: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given CT_INSIDER_MAPPING_PATH naming the operator's rules (the stack's cli service)
    rules = _operators_rules(tmp_path)
    monkeypatch.setenv("CT_INSIDER_MAPPING_PATH", str(rules))
    # Then a command without --mapping uses them, and --mapping still wins
    assert mapping_rules(None).path == rules
    assert mapping_rules(None).describe() == f"mapping rules: {rules}"
    with pytest.raises(MappingConfigError):
        mapping_rules(EXAMPLE)


def test_the_worker_refuses_the_example_before_connecting_to_temporal(
    production: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Given a production environment (Temporal at an address nothing listens on) and the
    # ready file a previous run of the container left behind
    ready = tmp_path / "worker.ready"
    ready.touch()
    # When the worker starts with the shipped example
    status = main(["worker", "--mapping", str(EXAMPLE), "--ready-file", str(ready)])
    # Then it exits 2 with the reason and the fix, never reaching Temporal (which would be 3),
    # and no health check takes the old file for this run's
    assert status == 2
    assert not ready.exists()
    error = capsys.readouterr().err
    assert "refusing the example mapping rules" in error
    assert "docs/deploy.md" in error
    # And without any mapping too (the built-in defaults are the example)
    assert main(["worker"]) == 2


def test_setup_insider_refuses_the_example_before_registering_anything(
    production: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a production environment whose Insider is unreachable (any request would fail 3)
    # When setup insider runs without --mapping
    status = main(["setup", "insider"])
    # Then it refuses with exit 2 before any request, naming the example
    assert status == 2
    error = capsys.readouterr().err
    assert "refusing the example mapping rules" in error
    assert "no mapping file was given" in error
