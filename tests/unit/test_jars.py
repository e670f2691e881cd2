"""The broker's jars: the Kafka version is declared once, in the pom, and the docs name it."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.broker import jars

ROOT = Path(__file__).parents[2]


def test_the_version_is_read_from_the_pom() -> None:
    version = jars.kafka_version()
    assert f"<kafka.version>{version}</kafka.version>" in jars.packaged_file("pom.xml").read_text()
    assert jars.maven_libs_dir().name.startswith(f"kafka-{version}-")


@pytest.mark.parametrize("doc", ["README.md", "docs/architecture.md"])
def test_the_docs_name_the_pinned_version(doc: str) -> None:
    assert f"Kafka {jars.kafka_version()}" in (ROOT / doc).read_text()


def test_a_pom_without_the_version_is_refused(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text('<project xmlns="http://maven.apache.org/POM/4.0.0"><properties/></project>')
    monkeypatch.setattr(jars, "packaged_file", lambda name: pom)
    with pytest.raises(jars.JarsUnavailable, match="kafka.version"):
        jars.kafka_version()


@pytest.mark.parametrize("compose", ["docker-compose.kafka.yml", "docker-compose.kafka-3.yml"])
def test_the_compose_files_run_the_pinned_version(compose: str) -> None:
    images = [line.split("image:")[1].strip() for line in (ROOT / compose).read_text().splitlines()
              if "image:" in line and "kafka" in line]
    assert images and set(images) == {f"apache/kafka:{jars.kafka_version()}"}
