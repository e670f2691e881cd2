"""Each compat module refuses a version it was not tested with, and every private
name it lists exists in the installed library (an upgrade that renames one fails here)."""

from __future__ import annotations

import re
from types import ModuleType

import pytest

import runtime.compat
from runtime.compat import UnsupportedVersion, missing_names, parse_version
from runtime.compat import aiokafka as compat_aiokafka
from runtime.compat import faust as compat_faust
from runtime.compat import uvicorn as compat_uvicorn

MODULES = {"aiokafka": compat_aiokafka, "faust-streaming": compat_faust,
           "uvicorn": compat_uvicorn}


@pytest.mark.parametrize("distribution", MODULES)
def test_every_fenced_name_exists_in_the_installed_library(distribution: str) -> None:
    module = MODULES[distribution]
    names = {**module.PRIVATE_NAMES}
    for cls, more in getattr(module, "UNDOCUMENTED_NAMES", {}).items():
        names[cls] = names.get(cls, ()) + more
    assert missing_names(names) == []


def test_a_missing_name_is_reported() -> None:
    class Upstream:
        _kept = 1

        def __init__(self) -> None:
            self._set_in_init = 2

    assert missing_names({Upstream: ("_kept", "_set_in_init", "_renamed")}) == [
        "test_a_missing_name_is_reported.<locals>.Upstream._renamed"]


@pytest.mark.parametrize("distribution", MODULES)
def test_the_installed_version_is_in_the_tested_range(distribution: str) -> None:
    module = MODULES[distribution]
    low, high = module.TESTED
    assert low <= parse_version(module.check_version()) < high


def _versions_outside(module: ModuleType) -> list[str]:
    low, high = module.TESTED
    below = (*low[:-1], low[-1] - 1) if low[-1] > 0 else (low[0] - 1, 99)
    return [".".join(map(str, below)) + ".9", ".".join(map(str, high)) + ".0"]


@pytest.mark.parametrize("distribution", MODULES)
def test_a_version_outside_the_tested_range_is_refused(distribution: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    module = MODULES[distribution]
    for found in _versions_outside(module):
        monkeypatch.setattr(runtime.compat, "installed_version", lambda _name, v=found: v)
        with pytest.raises(UnsupportedVersion) as refused:
            module.check_version()
        message = str(refused.value)
        assert found in message and distribution in message  # what was found
        low, high = module.TESTED
        tested = f">={'.'.join(map(str, low))},<{'.'.join(map(str, high))}"
        assert tested in message  # what is tested
        assert re.search(r"pip install|widen TESTED", message)  # what to do


def test_an_out_of_range_version_stops_the_import(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check runs when the module is imported, before anything uses the internals."""
    import importlib
    import sys

    monkeypatch.setattr(runtime.compat, "installed_version", lambda _name: "0.55.0")
    monkeypatch.delitem(sys.modules, "runtime.compat.uvicorn")
    with pytest.raises(UnsupportedVersion, match="uvicorn 0.55.0 is installed"):
        importlib.import_module("runtime.compat.uvicorn")


@pytest.mark.parametrize(("text", "parsed"), [("0.14.0", (0, 14, 0)), ("0.15.3rc1", (0, 15, 3)),
                                               ("1.10", (1, 10)), ("2.0.dev0", (2, 0))])
def test_versions_are_compared_by_their_numeric_release(text: str, parsed: tuple[int, ...]) -> None:
    assert parse_version(text) == parsed
