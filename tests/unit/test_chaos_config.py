"""`positioning chaos --workers N`: the chaos stack runs N workers, one of them the victim."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.chaos import Chaos, ChaosConfig, chaos_settings, instances
from runtime.settings import Settings


def test_the_chaos_stack_runs_the_workers_asked_for(tmp_path: Path) -> None:
    settings = chaos_settings(Settings(home=tmp_path), ChaosConfig(workers=2))
    assert settings.workers == 2
    assert settings.home == tmp_path / "chaos" / "stack"
    # --kill worker picks one of these at random.
    assert [c.name for c in instances(settings, "worker")] == ["worker-1", "worker-2"]
    assert [c.name for c in instances(settings, "edge")] == ["edge-eu", "edge-us"]
    lone = chaos_settings(Settings(home=tmp_path), ChaosConfig())
    assert [c.name for c in instances(lone, "worker")] == ["worker"]


def test_a_chaos_stack_without_a_worker_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--workers"):
        Chaos(Settings(home=tmp_path), ChaosConfig(workers=0))
