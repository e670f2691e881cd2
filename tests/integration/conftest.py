"""Fixtures shared by the integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from runtime.settings import Settings
from runtime.topics import ensure_topics
from tests.conftest import unique_settings
from tests.edge_node import Edge


@pytest.fixture(scope="module")
def two_edges(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[Settings, Edge, Edge]]:
    root = tmp_path_factory.mktemp("edges")
    settings = unique_settings(kafka_bootstrap, root)
    asyncio.run(ensure_topics(settings))
    eu = Edge(settings, "eu", root).start()
    us = Edge(settings, "us", root).start()
    try:
        yield settings, eu, us
    finally:
        eu.component.stop()
        us.component.stop()
