"""The dead-letter topic, for operators: read it to its current end, count its records.

The worker dead-letters a login it cannot process with the login's key and
bytes unchanged and the error in headers (schemas/events.py
``dead_letter_headers``). This module reads that topic from the beginning
to the high watermark each partition had when the call began, then stops
(records arriving meanwhile wait for the next call), within a deadline, and
works against any cluster: it needs nothing but the settings' topics. It
only reads: a consumer with no group, nothing committed, nothing produced.
Listing is in ops/dead_letter_listing.py, replaying in
ops/dead_letter_replay.py; the choices are in
docs/decisions/0012-dead-letter-replay.md.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from engine.validation import LoginRejected, validate_login
from ops.dead_letter_selection import Selection, iso_utc
from ops.replay_progress import PartitionProgress
from runtime.kafka_security import Role, client_options
from runtime.settings import Settings
from schemas.codec import DecodeError, login_codec
from schemas.events import (
    DEAD_LETTERED_AT_HEADER,
    ERROR_MESSAGE_HEADER,
    ERROR_STAGE_HEADER,
    ERROR_TYPE_HEADER,
    REPLAYED_AT_HEADER,
    REPLAYED_FROM_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER,
    SOURCE_TOPIC_HEADER,
)

NO_ERROR_TYPE = "(none)"
"""The error type of a record without an ``error.type`` header (not written by our worker)."""

DEFAULT_TIMEOUT_S = 30.0


class DeadLetterError(RuntimeError):
    """A dead-letter command cannot go on: a topic is missing, the read ran past its deadline,
    or a replay was not fully acknowledged; the message says which and what to do."""


class ReadTimedOut(DeadLetterError):
    """The dead-letter topic was not read to its end in time: ``read`` of ``expected`` records."""

    def __init__(self, message: str, read: int, expected: int) -> None:
        super().__init__(message)
        self.read = read
        self.expected = expected


def replay_group(settings: Settings) -> str:
    """The consumer group whose commits remember what was replayed: ``<worker_id>.dlq-replay``."""
    return f"{settings.worker_id}.dlq-replay"


def header_texts(headers: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
    """Kafka headers as text (UTF-8, bad bytes replaced); a repeated header keeps its last value."""
    return {name: (value or b"").decode("utf-8", errors="replace") for name, value in headers}


def header_int(text: str | None) -> int | None:
    """A header's ASCII-digits value as an int; None if absent or anything else."""
    if text is None or not text.isascii() or not text.isdigit():
        return None
    return int(text)


@dataclass(frozen=True)
class LoginView:
    """What a dead letter's bytes are now: the decoded login, and why it would fail (or None)."""

    login: dict[str, Any] | None
    problem: str | None

    @classmethod
    def of(cls, value: bytes | None) -> LoginView:
        """Decode with today's login codec and check with today's validation."""
        try:
            login = login_codec().decode(value)
        except DecodeError as exc:
            return cls(None, f"undecodable: {exc}")
        try:
            validate_login(login)
        except LoginRejected as exc:
            return cls(login, f"refused: {exc}")
        return cls(login, None)


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic, its headers decoded.

    Headers that are missing or malformed (a record not written by our
    worker) read as ``NO_ERROR_TYPE``, ``""`` or None; the time falls back
    to the record's Kafka timestamp.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: Any) -> DeadLetter:
        """From an aiokafka ``ConsumerRecord``."""
        return cls(record.topic, record.partition, record.offset, record.key, record.value,
                   record.timestamp, header_texts(record.headers))

    @property
    def error_type(self) -> str:
        return self.headers.get(ERROR_TYPE_HEADER) or NO_ERROR_TYPE

    @property
    def error_message(self) -> str:
        return self.headers.get(ERROR_MESSAGE_HEADER, "")

    @property
    def stage(self) -> str:
        return self.headers.get(ERROR_STAGE_HEADER, "")

    @property
    def source(self) -> tuple[str | None, int | None, int | None]:
        """(topic, partition, offset) of the record that failed, as far as the headers say."""
        return (self.headers.get(SOURCE_TOPIC_HEADER),
                header_int(self.headers.get(SOURCE_PARTITION_HEADER)),
                header_int(self.headers.get(SOURCE_OFFSET_HEADER)))

    @property
    def at_us(self) -> int:
        """When it was dead-lettered (µs): the header, else the record's timestamp."""
        at = header_int(self.headers.get(DEAD_LETTERED_AT_HEADER))
        return at if at is not None else self.timestamp_ms * 1000

    @property
    def replayed_from(self) -> str | None:
        """The dead letter this one is a failed replay of (``topic:partition:offset``), if any."""
        return self.headers.get(REPLAYED_FROM_HEADER)

    @property
    def where(self) -> str:
        """``<topic>:<partition>:<offset>``, the value of ``replayed_from`` on its replay."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    def replay_headers(self, at_us: int) -> list[tuple[str, bytes]]:
        """The headers of this dead letter's replay on ``logins``."""
        return [(REPLAYED_FROM_HEADER, self.where.encode()),
                (REPLAYED_AT_HEADER, str(at_us).encode())]

    def matches(self, selection: Selection) -> bool:
        return selection.matches(self.error_type, self.at_us, self.partition, self.offset)

    def to_json(self, replayed: bool) -> dict[str, Any]:
        """The record as a script reads it (``dlq list --json``); times µs and ISO-8601 UTC."""
        topic, partition, offset = self.source
        view = LoginView.of(self.value)
        return {
            "partition": self.partition, "offset": self.offset,
            "key": None if self.key is None else self.key.decode("utf-8", errors="replace"),
            "error": {"type": self.error_type, "message": self.error_message,
                      "stage": self.stage},
            "source": {"topic": topic, "partition": partition, "offset": offset},
            "dead_lettered_at": self.at_us, "dead_lettered_at_iso": iso_utc(self.at_us),
            "replayed_from": self.replayed_from,
            "replayed": replayed,
            "login": view.login, "login_problem": view.problem,
        }


@dataclass
class Snapshot:
    """The dead-letter topic as read by one call: its records up to ``ends`` and the replay
    progress (empty for a reader that does not ask)."""

    topic: str
    records: list[DeadLetter]
    log_start: dict[int, int]
    ends: dict[int, int]
    progress: dict[int, PartitionProgress] = field(default_factory=dict)

    def replayed(self, letter: DeadLetter) -> bool:
        progress = self.progress.get(letter.partition)
        return progress is not None and progress.replayed(letter.offset)


# -- reading ---------------------------------------------------------------------------

def admin_client(settings: Settings, timeout_s: float) -> AIOKafkaAdminClient:
    """An admin client whose every request is bounded by ``timeout_s`` (not started)."""
    return AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.OPS),
                               request_timeout_ms=int(timeout_s * 1000))


async def topic_partitions(admin: AIOKafkaAdminClient, topic: str) -> list[int]:
    """The partitions of ``topic``; DeadLetterError if it does not exist."""
    (described,) = await admin.describe_topics([topic])
    if described["error_code"] != 0 or not described["partitions"]:
        raise DeadLetterError(f"topic {topic!r} does not exist (run `positioning topics`, or "
                              "check POSITIONING_DLQ_TOPIC / POSITIONING_LOGINS_TOPIC)")
    return sorted(p["partition"] for p in described["partitions"])


async def recorded_progress(admin: AIOKafkaAdminClient, group: str, topic: str,
                    partitions: list[int]) -> dict[int, PartitionProgress]:
    """What the replay group has recorded, per partition (nothing committed: mark 0)."""
    committed = await admin.list_consumer_group_offsets(
        group, partitions=[TopicPartition(topic, p) for p in partitions])
    progress = {}
    for p in partitions:
        commit = committed.get(TopicPartition(topic, p))
        progress[p] = (PartitionProgress() if commit is None
                       else PartitionProgress.from_commit(commit.offset, commit.metadata))
    return progress


async def _read(consumer: AIOKafkaConsumer, topic: str, partitions: list[int],
                timeout_s: float) -> Snapshot:
    """Every record of ``topic`` from the log start to the high watermark of now.

    Raises:
        DeadLetterError: not all of them arrived within ``timeout_s``.
    """
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(tps)
    starts = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    for tp in tps:
        consumer.seek(tp, starts[tp])
    records: list[DeadLetter] = []
    expected = sum(ends[tp] - starts[tp] for tp in tps)
    try:
        async with asyncio.timeout(timeout_s):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, batch in batches.items():
                    records.extend(DeadLetter.from_record(r) for r in batch
                                   if r.offset < ends[tp])
    except TimeoutError:
        raise ReadTimedOut(
            f"read {len(records)} of up to {expected} records of {topic!r} in {timeout_s:g} s; "
            "give more time with --timeout", len(records), expected) from None
    return Snapshot(topic, records, {tp.partition: starts[tp] for tp in tps},
                    {tp.partition: ends[tp] for tp in tps})


async def read_dead_letters(settings: Settings, timeout_s: float = DEFAULT_TIMEOUT_S,
                            with_progress: bool = True, group: str | None = None) -> Snapshot:
    """The dead-letter topic up to its current end, and (``with_progress``) what the replay
    group (``group``, default ``replay_group``) recorded. Reads only: no group joins or commits.

    Raises:
        DeadLetterError: the topic does not exist, or reading took over ``timeout_s``.
        ProgressUnreadable: the replay group holds a commit this version cannot read.
        aiokafka.errors.KafkaError: the cluster did not answer.
    """
    topic = settings.dlq_topic
    admin = admin_client(settings, timeout_s)
    try:
        await admin.start()
        partitions = await topic_partitions(admin, topic)
        progress = (await recorded_progress(admin, group or replay_group(settings), topic, partitions)
                    if with_progress else {})
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.OPS), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                request_timeout_ms=int(timeout_s * 1000))
    try:
        await consumer.start()
        snapshot = await _read(consumer, topic, partitions, timeout_s)
    finally:
        await consumer.stop()
    snapshot.progress = progress
    return snapshot


async def count_by_error_type(settings: Settings,
                              timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, int]:
    """Dead letters per ``error.type`` in the whole dead-letter topic (``NO_ERROR_TYPE`` for a
    record without one), read to its current end; an empty topic gives ``{}``.

    Raises:
        ReadTimedOut: reading took over ``timeout_s`` (it says how many there are).
        DeadLetterError: the topic does not exist.
        aiokafka.errors.KafkaError: the cluster did not answer.
    """
    snapshot = await read_dead_letters(settings, timeout_s, with_progress=False)
    return dict(Counter(letter.error_type for letter in snapshot.records))
