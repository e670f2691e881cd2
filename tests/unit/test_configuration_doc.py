"""docs/configuration.md is rendered from the settings' declarations and committed as rendered."""

from __future__ import annotations

from pathlib import Path

from runtime.settings import Settings, configuration_markdown, env_var

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_committed_doc_is_the_rendered_one() -> None:
    assert DOC.read_text() == configuration_markdown(), (
        "docs/configuration.md is stale: python -m runtime.settings > docs/configuration.md")


def test_every_setting_has_a_row_with_its_variable_and_a_description() -> None:
    rows = [line for line in configuration_markdown().splitlines() if line.startswith("| `")]
    assert len(rows) == len(Settings.model_fields)
    for row, (name, field) in zip(rows, Settings.model_fields.items(), strict=True):
        assert row.startswith(f"| `{name}` | `{env_var(name)}` |")
        assert field.description, f"{name} has no description"
