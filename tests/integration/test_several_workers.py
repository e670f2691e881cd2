"""Two workers in one consumer group: they split the partitions, and when one is
SIGKILLed mid-stream the survivor takes its partitions over and nothing is lost,
counted twice or left without its tombstone: on the session's broker, and on the
session's 3-node cluster (``three_node_cluster``, tests/conftest.py)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from runtime.settings import Settings
from runtime.topics import ensure_topics
from tests.conftest import unique_settings
from tests.helpers import (
    Component,
    OfferReader,
    kill_mid_stream,
    start_worker,
    ticket_signer,
    wait_until,
    wait_until_async,
)

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


def partitions_of(worker: Component) -> list[int] | None:
    """The ``logins`` partitions a worker's readiness page lists; None while it is not ready."""
    assert worker.ready_url is not None
    try:
        response = httpx.get(worker.ready_url, timeout=2)
    except httpx.HTTPError:
        return None
    return response.json()["partitions"] if response.status_code == 200 else None


def start_workers(settings: Settings, logs: Path, count: int) -> list[Component]:
    """``count`` workers in the settings' group, each with a RocksDB directory of its own."""
    workers: list[Component] = []
    for i in range(1, count + 1):
        own = settings.replace(worker_data_dir=settings.home / f"worker-{i}")
        workers.append(start_worker(own, logs, name=f"worker-{i}"))
    return workers


def wait_for_split(workers: list[Component], partitions: int, timeout: float = 60) -> list[list[int]]:
    """Wait until every worker is ready with a disjoint, non-empty share covering all partitions."""
    shares: list[list[int]] = []

    def split() -> bool:
        shares[:] = [partitions_of(w) or [] for w in workers]
        taken = [p for share in shares for p in share]
        return all(shares) and sorted(taken) == list(range(partitions))

    wait_until(split, timeout, f"{len(workers)} workers to split {partitions} partitions",
               interval=0.2)
    return shares


async def test_two_workers_split_the_partitions(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = unique_settings(kafka_bootstrap, tmp_path, partitions=4)
    await ensure_topics(settings)
    workers = start_workers(settings, tmp_path / "logs", 2)
    try:
        one, two = wait_for_split(workers, settings.partitions)
        assert not set(one) & set(two)
    finally:
        for worker in workers:
            worker.stop()


async def test_a_sigkilled_worker_hands_its_partitions_over_and_nothing_is_lost(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    await kill_one_of_two_workers(kafka_bootstrap, tmp_path)


async def test_on_three_nodes_a_sigkilled_worker_hands_its_partitions_over(
        three_node_cluster: str, tmp_path: Path) -> None:
    await kill_one_of_two_workers(three_node_cluster, tmp_path)


async def kill_one_of_two_workers(bootstrap: str, tmp_path: Path) -> None:
    """Two workers split the partitions; one is SIGKILLed while 1500 logins flow. The
    survivor takes every partition, and every login becomes exactly one offer, with
    exact visit counts, then a tombstone at expiry."""
    # Model latency keeps logins in flight at the kill; the TTL outlasts the takeover
    # (a 10 s session timeout), so every offer is seen before its tombstone.
    settings = unique_settings(bootstrap, tmp_path, model_latency_ms=20.0,
                               partitions=4, ticket_ttl_s=40, expiry_sweep_s=1.0)
    await ensure_topics(settings)
    survivor, victim = start_workers(settings, tmp_path / "logs", 2)
    try:
        wait_for_split([survivor, victim], settings.partitions)
        async with OfferReader(settings) as reader:
            summary = await kill_mid_stream(settings, reader, victim.kill, rate=300,
                                            kill_after_offers=300)

            # The victim's partitions move to the survivor once its session expires.
            wait_until(lambda: partitions_of(survivor) == list(range(settings.partitions)),
                       60, "the survivor to hold every partition", interval=0.2)
            signer = ticket_signer(settings, settings.ticket_ttl_s)
            ticket_ids = [signer.verify(t).ticket_id for t in summary.tickets]
            try:
                offers = await reader.wait_for(ticket_ids, timeout=90)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nsurvivor's log:\n"
                                     f"{survivor.log_text()[-4000:]}") from None
            assert len(offers) == 1500
            visits: dict[str, list[int]] = defaultdict(list)
            for offer in offers.values():
                visits[offer["user_id"]].append(offer["visit"])
            for user, seen in visits.items():
                assert sorted(seen) == list(range(1, len(seen) + 1)), user

            # Every offer, the victim's partitions' included, is tombstoned at expiry.
            async def all_tombstoned() -> bool:
                await reader.poll()
                return all(reader.offers.get(t, 0) is None for t in ticket_ids)
            try:
                await wait_until_async(all_tombstoned, settings.ticket_ttl_s + 60,
                                       "tombstones for all 1500 tickets")
            except AssertionError as exc:
                missing = [t for t in ticket_ids if reader.offers.get(t) is not None]
                status = httpx.get(survivor.ready_url.replace("/ready/", "/status/"),
                                   timeout=2).text if survivor.ready_url else ""
                raise AssertionError(f"{exc}: {len(missing)} missing, e.g. {missing[:3]}; "
                                     f"survivor's status {status}\nsurvivor's log:\n"
                                     f"{survivor.log_text()[-6000:]}") from None
    finally:
        victim.kill()
        survivor.stop()
