"""docs/configuration.md documents exactly the settings the code declares."""

from __future__ import annotations

import re
from pathlib import Path

from runtime.settings import ENV_VARS

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_documented_and_nothing_else() -> None:
    documented: set[str] = set()
    for line in DOC.read_text().splitlines():
        if line.startswith("| `"):
            documented |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    declared = {variable for variable, _ in ENV_VARS.values()}
    assert documented - declared == set(), "documented but not a setting"
    assert declared - documented == set(), "a setting docs/configuration.md does not describe"
