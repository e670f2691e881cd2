"""Finding the Apache Kafka jars: an unpacked distribution, or Maven Central.

There is no Docker engine on the machines this project targets, so the broker
runs straight from the jars. ``pom.xml`` beside this module pins the version;
Maven resolves it once into a cache folder keyed by the pom's hash, so a
changed pom never mixes with an old copy.

An unpacked distribution comes from the ``kafka_home`` setting
(``KAFKA_HOME``), passed in by the caller. The cache folder follows the
platform's convention, ``$XDG_CACHE_HOME`` (default ``~/.cache``): the one
environment variable read here, as it is not a setting of this system.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path
from xml.etree import ElementTree

_POM = {"m": "http://maven.apache.org/POM/4.0.0"}


class JarsUnavailable(RuntimeError):
    """The broker's jars could not be found or downloaded."""


def packaged_file(name: str) -> Path:
    """A file shipped inside this package (pom.xml, log4j2.properties)."""
    return Path(str(resources.files(__package__).joinpath(name)))


def cache_root() -> Path:
    """This project's folder in the user's cache (XDG Base Directory convention)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "content-positioning"


def kafka_version() -> str:
    """The Kafka version the pom pins (its ``kafka.version`` property), declared there only."""
    root = ElementTree.parse(packaged_file("pom.xml")).getroot()
    version = root.findtext("m:properties/m:kafka.version", namespaces=_POM)
    if not version:
        raise JarsUnavailable("devstack/broker/pom.xml has no kafka.version property")
    return version.strip()


def _pom_digest(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()[:12]


def maven_libs_dir() -> Path:
    pom = packaged_file("pom.xml")
    return cache_root() / f"kafka-{kafka_version()}-{_pom_digest(pom)}"


def download_with_maven(target: Path) -> None:
    """Resolve the pom into ``target`` atomically (a half copy never counts)."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise JarsUnavailable(
            "Maven (mvn) is not on PATH: install it (apt-get install maven) "
            "or set KAFKA_HOME to an unpacked Kafka distribution"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".kafka-libs-", dir=target.parent))
    cmd = [
        mvn, "-q", "-B", "-f", str(packaged_file("pom.xml")),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        tail = (result.stdout + result.stderr)[-2000:]
        raise JarsUnavailable(f"Maven could not resolve the Kafka jars:\n{tail}")
    try:
        staging.rename(target)
    except OSError:
        # Another process finished first; its copy is as good as ours.
        shutil.rmtree(staging, ignore_errors=True)


def classpath(kafka_home: Path | None) -> str:
    """The broker's class path: the jars of ``kafka_home/libs`` (``Settings.kafka_home``) or,
    when that is None, the pinned jars, downloaded on first use.

    Raises JarsUnavailable if ``kafka_home`` has no jars or Maven cannot fetch them.
    """
    if kafka_home is not None:
        libs = kafka_home / "libs"
        jars = sorted(libs.glob("*.jar"))
        if not jars:
            raise JarsUnavailable(f"KAFKA_HOME={kafka_home} has no jars in {libs}")
        return os.pathsep.join(str(j) for j in jars)
    libs = maven_libs_dir()
    if not libs.is_dir():
        download_with_maven(libs)
    return os.pathsep.join(str(j) for j in sorted(libs.glob("*.jar")))
