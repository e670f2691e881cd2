"""Edges reading the same topic end in the same state, whatever the topic holds: for
generated sequences of good and bad records per ticket, an edge that followed them live and
one that caught up on them afterwards answer every ticket alike (status and body); and so
does one that caught up after the worker's repairs (pipeline/offer_repair.py) and a
compaction of the topic left only the last record of each ticket."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pipeline.expiry import Expirer
from pipeline.gap_reader import SourceRecord
from pipeline.records import OutRecord
from pipeline.worker import WorkerMetrics, offer_repairer
from runtime.kafka_security import Role, client_options, kafka_access
from runtime.settings import Settings
from runtime.topics import ensure_topics
from schemas.codec import HEADER_LEN, offer_codec
from schemas.events import EXPIRES_AT_HEADER, offer_headers
from schemas.offer_signatures import SIGNATURE_HEADERS, OfferSigner, SignedFields
from tests.compaction import compact_now
from tests.conftest import unique_settings
from tests.edge_node import Edge
from tests.helpers import wait_until
from tests.offers_feed import OfferFeed, offer_for

pytestmark = pytest.mark.integration

KINDS = ("valid", "corrupt", "bad_header", "missing_header", "bad_signature", "tombstone",
         "expired", "resend")
SEQUENCES = 520   # per example; two examples: over 1,000 sequences
EXAMPLES = 2

step = st.tuples(st.sampled_from(KINDS), st.integers(min_value=0, max_value=4))
sequences = st.lists(st.lists(step, min_size=1, max_size=6), min_size=SEQUENCES,
                     max_size=SEQUENCES)
# Every example also holds each kind alone and each ordered pair of kinds (with the later
# one newer, and older): Hypothesis's first example is its simplest, all one kind.
CORPUS = ([[(k, 1)] for k in KINDS]
          + [[(a, 1), (b, v)] for a in KINDS for b in KINDS for v in (0, 2)])


def _records(feed: OfferFeed, settings: Settings, plan: list[list[tuple[str, int]]],
             rng: random.Random) -> tuple[list[OutRecord], list[str]]:
    """Every ticket's records in its own order, tickets interleaved; and the tickets."""
    topic, codec = settings.offers_topic, offer_codec()
    forger = OfferSigner(topic, "forger", Ed25519PrivateKey.generate())
    base_us = int(time.time() * 1e6) + 600_000_000
    per_ticket: list[list[tuple[str, OutRecord]]] = []
    tokens = []
    for steps in plan:
        ticket = feed.signer.issue()
        tokens.append(ticket.token)
        key = ticket.ticket_id.encode()
        records: list[tuple[str, OutRecord]] = []
        for kind, version in steps:
            expires = base_us + version * 1_000_000
            offer = dict(offer_for(ticket), expires_at=expires)
            value = codec.encode(offer)
            if kind == "resend":
                if records:
                    records.append(records[-1])
                continue
            if kind == "tombstone":
                records.append(("sign", OutRecord(topic, key, None,
                                                  [(EXPIRES_AT_HEADER, str(expires).encode())])))
                continue
            if kind == "expired":
                offer["expires_at"] = int(time.time() * 1e6) - 10_000_000
                value = codec.encode(offer)
            if kind == "corrupt":
                value = value[:HEADER_LEN] + b"\xff" * 40  # a known schema, a broken body
            record = OutRecord(topic, key, value, offer_headers(offer))
            if kind == "bad_signature":
                fields = SignedFields(key, value, offer["expires_at"], offer["login_accepted_at"])
                records.append(("as is", record._replace(
                    headers=[*offer_headers(offer), *forger.sign([fields])[0]])))
            elif kind == "bad_header":
                records.append(("sign, then", record._replace(
                    headers=[(EXPIRES_AT_HEADER, b"12x")])))
            elif kind == "missing_header":
                records.append(("sign, then", record._replace(headers=[])))
            else:
                records.append(("sign", record))
        per_ticket.append(records)
    # Sign what the worker would sign, in batches of random sizes, as its batches are.
    signable = [(i, j) for i, recs in enumerate(per_ticket) for j, (how, _) in enumerate(recs)
                if how != "as is"]
    rng.shuffle(signable)
    signed: dict[tuple[int, int], OutRecord] = {}
    while signable:
        size = rng.randint(1, 24)
        batch, signable = signable[:size], signable[size:]
        for (i, j), record in zip(batch, feed.signed([
                _genuine(per_ticket[i][j][1]) for i, j in batch]), strict=True):
            how, original = per_ticket[i][j]
            if how == "sign, then":  # altered after signing: the headers the plan gives
                sig = [(k, v) for k, v in record.headers or [] if k in SIGNATURE_HEADERS]
                record = original._replace(headers=[*(original.headers or []), *sig])
            signed[(i, j)] = record
    ordered = [[signed.get((i, j), rec) for j, (_, rec) in enumerate(recs)]
               for i, recs in enumerate(per_ticket)]
    out: list[OutRecord] = []
    cursors = [0] * len(ordered)
    live = [i for i, recs in enumerate(ordered) if recs]
    while live:
        i = rng.choice(live)
        out.append(ordered[i][cursors[i]])
        cursors[i] += 1
        if cursors[i] == len(ordered[i]):
            live.remove(i)
    return out, tokens


def _genuine(record: OutRecord) -> OutRecord:
    """The record as the worker made it (a bad or missing header is the plan's alteration)."""
    if record.value is None:
        return record
    offer = offer_codec().decode(record.value) if _decodes(record.value) else None
    headers = offer_headers(offer) if offer else [
        (EXPIRES_AT_HEADER, str(int(time.time() * 1e6) + 600_000_000).encode())]
    return record._replace(headers=headers if record.headers in ([], None) or any(
        v == b"12x" for _, v in record.headers) else record.headers)


def _decodes(value: bytes) -> bool:
    try:
        offer_codec().decode(value)
        return True
    except ValueError:
        return False


async def _ends(settings: Settings) -> dict[str, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                **client_options(settings, Role.ADMIN))
    await consumer.start()
    try:
        tps = [TopicPartition(settings.offers_topic, p) for p in range(settings.partitions)]
        return {str(tp.partition): end for tp, end in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


def _answers(edge: Edge, tokens: list[str]) -> list[tuple[int, str]]:
    with httpx.Client(timeout=10) as http:
        return [(r.status_code, r.text) for r in
                (http.get(f"{edge.url}/offers/{token}") for token in tokens)]


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(plan=sequences)
def test_a_live_edge_and_one_that_caught_up_answer_every_ticket_alike(
        kafka_bootstrap: str, tmp_path: Path, plan: list[list[tuple[str, int]]]) -> None:
    plan = CORPUS + plan
    root = tmp_path / uuid.uuid4().hex[:8]
    settings = unique_settings(kafka_bootstrap, root)
    asyncio.run(ensure_topics(settings))
    live = Edge(settings, "live", root).start()
    try:
        async def write() -> list[str]:
            async with OfferFeed(settings) as feed:
                records, tokens = _records(feed, settings, plan, random.Random(len(plan)))
                futures = [await feed.producer.send(r.topic, r.value, key=r.key,
                                                    headers=r.headers) for r in records]
                for future in futures:
                    await future
            return tokens

        tokens = asyncio.run(write())
        ends = asyncio.run(_ends(settings))
        wait_until(lambda: live.readyz()["next_offsets"] == ends, 60,
                   "the live edge to read the whole topic")
        fresh = Edge(settings, "fresh", root).start()
        try:
            wait_until(lambda: fresh.readyz()["next_offsets"] == ends, 60,
                       "the new edge to read the whole topic")
            live_answers, fresh_answers = _answers(live, tokens), _answers(fresh, tokens)
            differ = [(plan[i], a, b) for i, (a, b) in
                      enumerate(zip(live_answers, fresh_answers, strict=True)) if a != b]
            assert differ == [], differ[:3]
            assert {status for status, _ in live_answers} >= {200, 404, 410}  # not all alike
        finally:
            fresh.component.stop()
        repaired = asyncio.run(_repair(settings))
        assert repaired > 0  # the corpus has bad records after good ones
        asyncio.run(compact_now(settings))
        ends = asyncio.run(_ends(settings))
        wait_until(lambda: live.readyz()["next_offsets"] == ends, 60,
                   "the live edge to read the repairs")
        served = [i for i, (status, _) in enumerate(live_answers) if status == 200]
        after = _answers(live, tokens)
        # The repairs are re-sends to a live edge: what it served, it still serves.
        assert [after[i] for i in served] == [live_answers[i] for i in served]
        compacted = Edge(settings, "compacted", root).start()
        try:
            wait_until(lambda: compacted.readyz()["next_offsets"] == ends, 60,
                       "an edge to read the compacted topic")
            differ = [(plan[i], a, b) for i, (a, b) in
                      enumerate(zip(after, _answers(compacted, tokens), strict=True)) if a != b]
            assert differ == [], differ[:3]
        finally:
            compacted.component.stop()
    finally:
        live.component.stop()


async def _repair(settings: Settings) -> int:
    """Run the worker's expiry consumer, repairs and all, until its partitions are read and
    nothing waits for a repair; how many records it produced again."""
    access = kafka_access(settings, Role.WORKER)
    async with OfferFeed(settings) as feed:
        async def resend(records: list[SourceRecord]) -> None:
            await feed.send_as_is([OutRecord(settings.offers_topic, r.key or b"", r.value,
                                             list(r.headers)) for r in records])

        async def tombstones(due: list[tuple[bytes, int]]) -> None:
            await feed.send([OutRecord(settings.offers_topic, t, None,
                                       [(EXPIRES_AT_HEADER, str(e).encode())]) for t, e in due])

        metrics = WorkerMetrics()

        def repaired() -> float:
            return metrics.registry.get_sample_value("worker_offers_repaired_total") or 0.0

        repairer = offer_repairer(settings, access, resend, metrics)
        assert repairer is not None
        expirer = Expirer(settings.bootstrap_servers, settings.offers_topic,
                          f"{settings.worker_id}-expiry", tombstones, 0.2, access=access,
                          repairer=repairer)
        task = asyncio.create_task(expirer.run())
        try:
            async with asyncio.timeout(90):
                while not (expirer.index.loaded and not expirer.index.loading
                           and repairer.index.waiting == 0
                           and repaired() > 0):
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.1)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return int(repaired())
