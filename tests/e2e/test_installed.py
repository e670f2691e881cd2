"""The project as users install it: a built wheel, not an editable install, in a fresh
virtual environment, run from a folder outside the repository. `up`, `story` and `down`
work, because the schemas, the catalog, the web client and the broker's files are
package data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from devstack.ports import free_edge_port, free_port
from tests.conftest import unique_settings

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_a_wheel_in_a_fresh_venv_runs_the_stack_and_the_story(kafka_bootstrap: str,
                                                              tmp_path: Path) -> None:
    wheels, venv, outside = tmp_path / "wheels", tmp_path / "venv", tmp_path / "elsewhere"
    outside.mkdir()
    # Built from a copy of the sources: setuptools' build/ folder in the repository could
    # hold files deleted since, and the build must not write into the repository.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", ".positioning*", "*.egg-info", "__pycache__", ".*_cache"))
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels),
                  str(source)], cwd=outside)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("content_positioning-*.whl")
    assert _run([sys.executable, "-m", "venv", str(venv)], cwd=outside).returncode == 0
    installed = _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], cwd=outside)
    assert installed.returncode == 0, installed.stderr[-2000:]

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("POSITIONING_", "KAFKA_", "PYTHON", "VIRTUAL_ENV"))}
    where = _run([str(venv / "bin" / "python"), "-c", "import cli; print(cli.__file__)"],
                 cwd=outside, env=env)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr   # not the repo's
    shown = _run([str(venv / "bin" / "positioning"), "--version"], cwd=outside, env=env)
    assert shown.stdout == f"positioning {version('content-positioning')}\n", shown.stderr

    settings = unique_settings(kafka_bootstrap, tmp_path / "home", origin_port=free_port(),
                               edges=(f"eu={free_edge_port()}", f"us={free_edge_port()}"))
    env = {**env, **settings.to_env()}
    positioning = str(venv / "bin" / "positioning")
    try:
        up = _run([positioning, "up"], cwd=outside, env=env, timeout=300)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        story = _run([positioning, "story", "--users", "2", "--gap", "0.5"], cwd=outside,
                     env=env, timeout=300)
        assert story.returncode == 0, story.stdout[-2000:] + story.stderr[-2000:]
        assert "positioned" in story.stdout
        assert list((settings.home / "reports").glob("story-*.html"))
    finally:
        down = _run([positioning, "down"], cwd=outside, env=env, timeout=120)
    assert down.returncode == 0, down.stderr
