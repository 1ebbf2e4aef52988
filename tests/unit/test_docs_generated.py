"""The generated tables of the docs match the code (settings, mapping rules, CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from ct_insider.config import InsiderSettings
from tools import gen_docs


def test_checked_in_tables_are_current() -> None:
    # Given the docs as checked in, when the tables are rendered from the code now,
    # then they are identical.
    stale = gen_docs.stale_documents()
    assert not stale, f"generated tables are stale in {', '.join(stale)}: run `make docs`"


def _copy_docs(tmp_path: Path) -> None:
    for path in gen_docs.TARGETS:
        copy = tmp_path / path
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text((gen_docs.ROOT / path).read_text(encoding="utf-8"), encoding="utf-8")


def test_a_changed_default_makes_the_docs_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a copy of the docs that is current
    _copy_docs(tmp_path)
    assert gen_docs.stale_documents(tmp_path) == []

    # When a setting's default changes in the code
    field = InsiderSettings.model_fields["catalog_requests_per_minute"]
    monkeypatch.setattr(field, "default", 61)

    # Then the check names the document holding its table, and regenerating shows the new value
    assert gen_docs.stale_documents(tmp_path) == ["docs/operations.md"]
    text = (tmp_path / "docs/operations.md").read_text(encoding="utf-8")
    assert "| `INSIDER_CATALOG_REQUESTS_PER_MINUTE` | int (≥ 1) | `61` |" in gen_docs.regenerate(
        "docs/operations.md", text
    )


def test_a_hand_edit_inside_a_generated_region_is_stale(tmp_path: Path) -> None:
    _copy_docs(tmp_path)
    readme = tmp_path / "README.md"
    text = readme.read_text(encoding="utf-8")
    assert "| `ct-insider doctor` |" in text
    readme.write_text(text.replace("| `ct-insider doctor` |", "| `ct-insider doc` |"), "utf-8")
    assert gen_docs.stale_documents(tmp_path) == ["README.md"]


def test_every_setting_and_rule_is_documented() -> None:
    # Rendering raises on a field without description=, and every field gets a row.
    config = gen_docs.render_config()
    for cls in gen_docs.settings_classes():
        for name, field in cls.model_fields.items():
            variable = gen_docs.variable_names(cls, name, field)[0]
            assert f"| `{variable}`" in config
    assert "| `orders.refund_sources` |" in gen_docs.render_mapping()
    assert "| `ct-insider dlq retry` |" in gen_docs.render_cli()


def test_secrets_show_no_value() -> None:
    row = next(line for line in gen_docs.render_config().splitlines() if "`BRIDGE_TOKEN`" in line)
    assert "| secret | required |" in row
    field = FieldInfo.from_annotated_attribute(SecretStr, SecretStr("hunter2-hunter2"))
    assert gen_docs._config_default(field) == "secret"


def test_an_undocumented_field_is_refused() -> None:
    class Undocumented(BaseModel):
        port: int = 1

    with pytest.raises(gen_docs.UndocumentedField, match=r"Undocumented\.port"):
        list(gen_docs._rule_rows(Undocumented, ""))


def test_a_region_without_markers_is_an_error() -> None:
    with pytest.raises(gen_docs.MissingRegion):
        gen_docs.fill_region("no markers here", "config", "x")
    filled = gen_docs.fill_region(
        "a\n<!-- generated:cli -->\nold\n<!-- /generated:cli -->\nb", "cli", "new"
    )
    assert filled == "a\n<!-- generated:cli -->\nnew\n<!-- /generated:cli -->\nb"


def test_relative_links_of_the_docs_resolve() -> None:
    broken = gen_docs.broken_links()
    assert not broken, "broken links: " + "; ".join(broken)


def test_a_missing_file_or_heading_is_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench/README.md").write_text("# Runs\n", encoding="utf-8")
    (tmp_path / "docs/ops.md").write_text("# Ops\n\n## CLI conventions: `--json`\n", "utf-8")
    (tmp_path / "README.md").write_text(
        "[ok](docs/ops.md#cli-conventions---json) [gone](docs/none.md) "
        "[bad anchor](bench/README.md#nope) [web](https://example.com/x)\n",
        encoding="utf-8",
    )
    assert gen_docs.broken_links(tmp_path) == [
        "README.md: docs/none.md",
        "README.md: bench/README.md#nope",
    ]


def test_every_mapping_rule_is_in_exactly_one_table_of_the_deploy_page() -> None:
    # Given the rules and docs/deploy.md's four tables (customers, orders, events, catalog)
    rules = [line.split("|")[1].strip() for line in gen_docs.render_mapping().splitlines()[2:]]
    tables = {name: gen_docs.RENDERERS[name]() for name in gen_docs.MAPPING_PARTS}
    # Then each rule has a row in exactly one of them, and the page holds all four
    for rule in rules:
        holding = [name for name, table in tables.items() if f"\n| {rule} |" in table]
        assert len(holding) == 1, f"{rule} is in {holding}"
    assert set(gen_docs.TARGETS["docs/deploy.md"]) == set(gen_docs.MAPPING_PARTS)
    assert "| `catalog.markets[].channel` |" in tables["mapping-catalog"]
    assert "| `sign_up_event` |" in tables["mapping-events"]
