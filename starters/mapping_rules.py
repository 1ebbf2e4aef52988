"""The mapping rules a command of the deployment uses: `--mapping`, else
CT_INSIDER_MAPPING_PATH; the example rules only where CT_INSIDER_MAPPING_ALLOW_EXAMPLE says so
(ct_insider/mapping/config.py, operator_mapping)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ct_insider.config import MappingSettings, load
from ct_insider.mapping.config import MappingConfig, example_reasons, operator_mapping


@dataclass(frozen=True)
class MappingRules:
    config: MappingConfig
    path: Path | None  # None: the built-in example rules
    example: bool

    def describe(self) -> str:
        """One line for an operator: which rules these are."""
        if not self.example:
            return f"mapping rules: {self.path}"
        reasons = "; ".join(example_reasons(self.config, self.path))
        return (
            f"mapping rules: THE EXAMPLE ({reasons}), used because "
            "CT_INSIDER_MAPPING_ALLOW_EXAMPLE=true: demo markets, not for a live account"
        )


def mapping_rules(cli_path: Path | None) -> MappingRules:
    """The rules, or a MappingConfigError saying what to provide (unreadable, invalid, or the
    example without the opt-in)."""
    settings = load(MappingSettings)
    path = cli_path if cli_path is not None else settings.path
    config, example = operator_mapping(path, allow_example=settings.allow_example)
    return MappingRules(config, path, example)
