"""schemathesis against the origin and an edge: each server's OpenAPI and its validation
agree, and no generated input (valid or not) gets a 5xx or an undocumented answer."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.ports import free_edge_port, free_port
from runtime.topics import ensure_topics
from tests.conftest import unique_settings
from tests.helpers import Component

pytestmark = pytest.mark.integration

SCHEMATHESIS = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")


def fuzz(openapi_url: str, examples: int = 100) -> None:
    result = subprocess.run(
        [SCHEMATHESIS, "run", openapi_url, "--checks", "all", "--max-examples", str(examples),
         "--seed", "1", "--request-timeout", "15", "--no-color"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_the_origin_and_an_edge_keep_their_openapi_contract(kafka_bootstrap: str,
                                                             tmp_path: Path) -> None:
    settings = unique_settings(kafka_bootstrap, tmp_path, origin_port=free_port())
    asyncio.run(ensure_topics(settings))
    origin = Component("origin", ["origin"], settings, tmp_path / "logs").start()
    edge_port = free_edge_port()
    edge = Component("edge", ["edge", "--region", "eu", "--port", str(edge_port)], settings,
                     tmp_path / "logs").start()
    try:
        origin.wait_http_ok(f"http://127.0.0.1:{settings.origin_port}/readyz", timeout=30)
        edge.wait_http_ok(f"http://127.0.0.1:{edge_port}/readyz", timeout=60)
        fuzz(f"http://127.0.0.1:{settings.origin_port}/openapi.json")
        fuzz(f"http://127.0.0.1:{edge_port}/openapi.json")
    finally:
        origin.stop()
        edge.stop()
