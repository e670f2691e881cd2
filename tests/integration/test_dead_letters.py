"""``positioning dlq list`` and ``replay`` against a real broker and a real worker process.

The commands run in-process through click's runner with the environment of
the test's settings, as an operator's shell would give it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from click.testing import CliRunner, Result

import cli.main as cli_main
from ops.dead_letter_replay import replay_dead_letters
from ops.dead_letter_selection import OffsetRange, Selection
from ops.dead_letters import DeadLetterError, count_by_error_type, replay_group
from runtime.clock import now_us
from runtime.kafka_security import Role, client_options
from runtime.settings import Settings
from runtime.topics import ensure_topics
from schemas.codec import AvroCodec, load_schema, login_codec, offer_codec
from schemas.events import dead_letter_headers
from tests.conftest import unique_settings
from tests.helpers import start_worker, ticket_signer, wait_until

pytestmark = pytest.mark.integration

Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Topics of this module's own, and a worker process reading them."""
    home = tmp_path_factory.mktemp("dead-letters")
    settings = unique_settings(kafka_bootstrap, home)
    asyncio.run(ensure_topics(settings))
    worker = start_worker(settings, home / "logs")
    try:
        yield settings
    finally:
        worker.stop()


def dlq(settings: Settings, *args: str) -> Result:
    """``positioning dlq <args>`` with the settings' environment; must exit 0."""
    result = CliRunner(env=settings.to_env()).invoke(cli_main.positioning, ["dlq", *args],
                                                     prog_name="positioning")
    assert result.exit_code == 0, result.output
    return result


def listed(settings: Settings, *args: str) -> dict[str, Any]:
    """``dlq list --json <args>``, parsed."""
    document: dict[str, Any] = json.loads(dlq(settings, "list", "--json", *args).stdout)
    return document


async def produce(settings: Settings, topic: str, records: list[Record]) -> list[Any]:
    """Produce and wait for the acks; the records' metadata (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.ADMIN), acks="all")
    await producer.start()
    try:
        return [await producer.send_and_wait(topic, value, key=key, headers=headers)
                for key, value, headers in records]
    finally:
        await producer.stop()


async def read_all(settings: Settings, topic: str) -> list[Any]:
    """Every committed record of ``topic`` up to its current end (read_committed, as the
    worker reads: an aborted replay is not there)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.ADMIN), group_id=None,
                                enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[Any] = []
        async with asyncio.timeout(30):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    out.extend(batch)
        return out
    finally:
        await consumer.stop()


def visible_replays(settings: Settings, wheres: set[str]) -> dict[str, Any] | None:
    """The replays on ``logins`` by their ``replayed_from``, once every one of ``wheres`` is
    visible to a read_committed reader (a transaction's markers land just after its
    commit returns); None until then."""
    replays = {dict(r.headers)["replayed_from"].decode(): r
               for r in asyncio.run(read_all(settings, settings.logins_topic))
               if "replayed_from" in dict(r.headers)}
    return replays if wheres <= set(replays) else None


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.ADMIN), group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        return {tp.partition: end for tp, end in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def committed(settings: Settings, group: str) -> dict[Any, Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.ADMIN))
    await admin.start()
    try:
        return {tp: (o.offset, o.metadata)
                for tp, o in (await admin.list_consumer_group_offsets(group)).items()}
    finally:
        await admin.close()


async def groups(settings: Settings) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.ADMIN))
    await admin.start()
    try:
        return {group[0] for group in await admin.list_consumer_groups()}
    finally:
        await admin.close()


def offers_of(settings: Settings, ticket_id: str) -> list[bytes]:
    """The values of every record of ``offers`` keyed by this ticket id, in order."""
    return [r.value for r in asyncio.run(read_all(settings, settings.offers_topic))
            if r.key == ticket_id.encode() and r.value is not None]


def login(settings: Settings, user_id: str, accepted_at: int | None = None) -> dict[str, Any]:
    """A valid login event with a fresh ticket (the origin's fields)."""
    ticket = ticket_signer(settings, 900).issue()
    at = accepted_at or now_us()
    return {"ticket_id": ticket.ticket_id, "user_id": user_id, "ip": "81.2.69.160",
            "user_agent": None, "login_accepted_at": at, "expires_at": at + 900_000_000}


def as_an_older_worker_dead_lettered(settings: Settings, event: dict[str, Any],
                                     source_offset: int) -> Record:
    """The dead letter an older worker wrote for a valid login it could not read.

    Today's worker knows every login schema it is sent, so a login that is
    good now but was dead-lettered then cannot be made to happen here; this
    is the record such a worker produced (its ``dead_letter`` headers, the
    login's key and bytes unchanged): an ``UnknownSchema`` at decode, as
    after a rollout where the origins wrote a new writer schema before the
    workers knew it.
    """
    headers = dead_letter_headers(
        "UnknownSchema", "LoginEvent: unknown writer schema fingerprint 0123456789abcdef",
        "decode", settings.logins_topic, 0, source_offset, now_us())
    return (event["user_id"].encode(), login_codec().encode(event), headers)


def test_list_shows_what_the_worker_dead_lettered_with_its_error_and_source(
        settings: Settings) -> None:
    refused = login(settings, "list-user")
    refused["expires_at"] = refused["login_accepted_at"] - 1
    values = [b"\x00\xffnot avro at all", b"neither", login_codec().encode(refused)]
    sent = asyncio.run(produce(settings, settings.logins_topic,
                               [(b"list-user", v, []) for v in values]))

    def dead_lettered() -> bool:
        counts = asyncio.run(count_by_error_type(settings))
        return counts.get("MalformedMessage", 0) >= 2 and counts.get("LoginRejected", 0) >= 1
    wait_until(dead_lettered, 60, "the worker to dead-letter the three records", interval=0.5)

    groups_before = asyncio.run(groups(settings))
    progress_before = asyncio.run(committed(settings, replay_group(settings)))
    text = dlq(settings, "list").stdout
    garbage = sent[0]
    assert f"decode/MalformedMessage  from {settings.logins_topic}[{garbage.partition}]" \
           f"@{garbage.offset}  pending" in text
    assert "login: still undecodable (the same error)" in text
    assert "validate/LoginRejected" in text and "(refused: expires_at is not after" in text
    assert "by error type: " in text

    mine = listed(settings, "--type", "MalformedMessage", "--type", "LoginRejected")
    assert mine["counts"]["by_error_type"] == {"MalformedMessage": 2, "LoginRejected": 1}
    assert mine["counts"]["matched"] == mine["counts"]["shown"] == 3
    assert mine["counts"]["pending"] == 3 and mine["counts"]["replayed"] == 0
    by_source = {(r["source"]["partition"], r["source"]["offset"]): r for r in mine["records"]}
    assert set(by_source) == {(m.partition, m.offset) for m in sent}
    first = by_source[(garbage.partition, garbage.offset)]
    assert first["error"]["stage"] == "decode" and first["key"] == "list-user"
    assert first["source"]["topic"] == settings.logins_topic
    assert first["login"] is None and first["login_problem"].startswith("undecodable: ")
    assert first["dead_lettered_at_iso"].endswith("Z")
    rejected = by_source[(sent[2].partition, sent[2].offset)]
    assert rejected["login"]["ticket_id"] == refused["ticket_id"]

    everything = listed(settings)
    assert everything["counts"]["by_error_type"] == asyncio.run(count_by_error_type(settings))
    assert sum(everything["counts"]["by_error_type"].values()) == everything["counts"]["total"]

    types = ("--type", "MalformedMessage", "--type", "LoginRejected")
    assert listed(settings, *types, "--since", "1h")["counts"]["matched"] == 3
    assert listed(settings, *types, "--since", "2000-01-01T00:00:00Z")["counts"]["matched"] == 3
    assert listed(settings, *types, "--until", "2000-01-01T00:00:00Z")["counts"]["matched"] == 0
    assert listed(settings, "--type", "NoSuchError")["counts"]["by_error_type"] == {}
    limited = listed(settings, *types, "--limit", "1")
    assert (limited["counts"]["matched"], len(limited["records"])) == (3, 1)
    letter = first["partition"], first["offset"]
    one = listed(settings, "--offsets", f"{letter[0]}:{letter[1]}")
    assert [(r["partition"], r["offset"]) for r in one["records"]] == [letter]

    # Listing reads only: no group appeared, nothing was committed.
    assert asyncio.run(groups(settings)) == groups_before
    assert asyncio.run(committed(settings, replay_group(settings))) == progress_before


def test_a_replayed_login_yields_its_offer_once_and_a_second_replay_adds_nothing(
        settings: Settings) -> None:
    fixed = login(settings, "replay-user")
    unknown = load_schema("login_event")
    unknown["fields"] = unknown["fields"] + [{"name": "extra", "type": "int"}]
    still_unknown = AvroCodec(unknown).encode({**login(settings, "replay-user-2"), "extra": 1})
    (letter,) = asyncio.run(produce(settings, settings.dlq_topic, [
        as_an_older_worker_dead_lettered(settings, fixed, source_offset=17)]))
    (failing,) = asyncio.run(produce(settings, settings.logins_topic,
                                     [(b"replay-user-2", still_unknown, [])]))

    def failing_dead_lettered() -> dict[str, Any] | None:
        records = listed(settings, "--type", "UnknownSchema")["records"]
        return next((r for r in records if r["source"]["offset"] == failing.offset
                     and r["source"]["partition"] == failing.partition
                     and r["source"]["topic"] == settings.logins_topic), None)
    failing_letter = wait_until(failing_dead_lettered, 60, "the worker to dead-letter it")

    recorded = asyncio.run(committed(settings, replay_group(settings)))
    dry = dlq(settings, "replay", "--all", "--dry-run").stdout
    fixed_where = f"{settings.dlq_topic}:{letter.partition}:{letter.offset}"
    failing_where = (f"{settings.dlq_topic}:{failing_letter['partition']}:"
                     f"{failing_letter['offset']}")
    assert fixed_where in dry and failing_where in dry and "would be replayed" in dry
    assert asyncio.run(committed(settings, replay_group(settings))) == recorded  # dry: nothing

    first = dlq(settings, "replay", "--all").stdout
    assert " replayed onto " in first and not first.startswith("0 ")
    replays = wait_until(lambda: visible_replays(settings, {fixed_where, failing_where}), 30,
                         "the replay's transaction to be visible")
    replay = replays[fixed_where]
    assert (replay.key, replay.value) == (b"replay-user", login_codec().encode(fixed))
    assert int(dict(replay.headers)["replayed_at"]) > 0

    def offer() -> list[bytes]:
        return offers_of(settings, fixed["ticket_id"])
    (offer_bytes,) = wait_until(offer, 60, "the replayed login's offer", interval=0.5)
    assert offer_codec().decode(offer_bytes)["visit"] == 1

    def failed_again() -> dict[str, Any] | None:
        return next((r for r in listed(settings)["records"]
                     if r["replayed_from"] == failing_where), None)
    again = wait_until(failed_again, 60, "the failing replay to come back as a dead letter")
    assert again["error"]["type"] == "UnknownSchema" and not again["replayed"]

    logins_before = asyncio.run(end_offsets(settings, settings.logins_topic))
    second = dlq(settings, "replay", "--all").stdout
    assert second.startswith("0 replayed onto "), second
    assert "left out: they failed again after a replay" in second
    assert asyncio.run(end_offsets(settings, settings.logins_topic)) == logins_before
    assert offer() == [offer_bytes]
    state = listed(settings, "--offsets", f"{letter.partition}:{letter.offset}")
    assert state["records"][0]["replayed"] is True


def test_a_login_replayed_twice_counts_one_visit_and_keeps_its_offer(
        settings: Settings) -> None:
    """Two replay groups each hold their own progress (an operator's second group, or a
    group's offsets expired), so both replay the same dead letter. The worker knows the
    replayed login by its ticket id and counts it once."""
    event = login(settings, "twice-user")
    (letter,) = asyncio.run(produce(settings, settings.dlq_topic, [
        as_an_older_worker_dead_lettered(settings, event, source_offset=23)]))
    one = Selection.of(ranges=[OffsetRange(letter.partition, letter.offset, letter.offset)])
    first = asyncio.run(replay_dead_letters(settings, one))
    again = asyncio.run(replay_dead_letters(settings, one,
                                            group=f"{settings.worker_id}.dlq-replay-again"))
    assert len(first.replayed) == len(again.replayed) == 1

    def both() -> list[bytes] | None:
        offers = offers_of(settings, event["ticket_id"])
        return offers if len(offers) == 2 else None
    offers = wait_until(both, 60, "the offers of both replays", interval=0.5)
    assert offers[0] == offers[1]  # the same offer, to the byte
    assert offer_codec().decode(offers[0])["visit"] == 1

    later = login(settings, "twice-user")
    asyncio.run(produce(settings, settings.logins_topic,
                        [(b"twice-user", login_codec().encode(later), [])]))
    (next_offer,) = wait_until(lambda: offers_of(settings, later["ticket_id"]), 60,
                               "the user's next offer", interval=0.5)
    assert offer_codec().decode(next_offer)["visit"] == 2  # one visit counted for the replays


def test_replays_at_once_put_each_dead_letter_back_once(settings: Settings) -> None:
    """Three replays of the same selection race: they share one transactional id, so each
    one that starts fences those before it, and a fenced one replays nothing."""
    events = [login(settings, f"race-user-{i}") for i in range(20)]
    letters = asyncio.run(produce(settings, settings.dlq_topic, [
        as_an_older_worker_dead_lettered(settings, event, source_offset=1000 + i)
        for i, event in enumerate(events)]))
    selection = Selection.of(ranges=[OffsetRange(m.partition, m.offset, m.offset)
                                     for m in letters])

    async def race() -> list[Any]:
        return await asyncio.gather(*(replay_dead_letters(settings, selection)
                                      for _ in range(3)), return_exceptions=True)

    results = asyncio.run(race())
    done = [r for r in results if not isinstance(r, BaseException)]
    fenced = [r for r in results if isinstance(r, BaseException)]
    assert done, results
    assert all(isinstance(e, DeadLetterError) and "fenced" in str(e) for e in fenced), fenced
    assert sum(len(r.replayed) for r in done) == len(letters)
    wheres = {f"{settings.dlq_topic}:{m.partition}:{m.offset}" for m in letters}
    wait_until(lambda: visible_replays(settings, wheres), 30,
               "the replay's transaction to be visible")
    replayed = [dict(r.headers)["replayed_from"].decode()
                for r in asyncio.run(read_all(settings, settings.logins_topic))
                if "replayed_from" in dict(r.headers)]
    assert sorted(w for w in replayed if w in wheres) == sorted(wheres)   # each exactly once
    again = asyncio.run(replay_dead_letters(settings, selection))
    assert not again.replayed and len(again.already) == len(letters)
    # The worker reads what the committed replay wrote: every login has its offer.
    for event in events:
        wait_until(lambda event=event: offers_of(settings, event["ticket_id"]), 60,
                   f"the offer of {event['user_id']}", interval=0.5)


def test_count_by_error_type_counts_the_whole_topic(kafka_bootstrap: str,
                                                    tmp_path: Any) -> None:
    """Its own topics, no worker: the records are what the worker writes, made here."""
    own = unique_settings(kafka_bootstrap, tmp_path / "home")
    missing = own.replace(dlq_topic=own.dlq_topic + "-missing")
    asyncio.run(ensure_topics(own))
    assert asyncio.run(count_by_error_type(own)) == {}
    letters: list[Record] = [
        (f"user-{i}".encode(), b"x",
         dead_letter_headers(kind, "m", "decode", own.logins_topic, 0, i, now_us()))
        for i, kind in enumerate(["UnknownSchema", "MalformedMessage", "UnknownSchema"])]
    letters.append((b"user-3", b"y", []))  # not written by our worker: no error.type
    asyncio.run(produce(own, own.dlq_topic, letters))
    assert asyncio.run(count_by_error_type(own)) == {"UnknownSchema": 2, "MalformedMessage": 1,
                                                     "(none)": 1}
    with pytest.raises(DeadLetterError, match="does not exist"):
        asyncio.run(count_by_error_type(missing))
