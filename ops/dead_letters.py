"""The dead-letter topic, for operators: list its records, count them, replay fixed ones.

The worker dead-letters a login it cannot process with the login's key and
bytes unchanged and the error in headers (schemas/events.py
``dead_letter_headers``). This module reads that topic from the beginning
to the high watermark each partition had when the call began, then stops
(records arriving meanwhile wait for the next call), within a deadline, and
works against any cluster: it needs nothing but the settings' topics.

- ``list_dead_letters`` and ``count_by_error_type`` only read: a consumer
  with no group, nothing committed, nothing produced.
- ``replay_dead_letters`` puts selected dead letters back on ``logins``
  with their original key and value and the provenance headers
  ``replayed_from`` (``<dead-letter topic>:<partition>:<offset>``) and
  ``replayed_at``, through an idempotent producer with ``acks=all``, then
  records them as replayed in the replay group (``replay_group``; the
  format is in ops/replay_progress.py), so a second replay of the same
  selection replays nothing. A replay that fails again is a new dead letter
  carrying ``replayed_from``; it is replayed again only when selected by
  its offsets. A replayed login keeps its ticket id, so even
  a record replayed twice (a crash between producing and recording) is
  counted once by the worker while the user has had fewer than 32 other
  logins since (engine/state.py). The choices are in
  docs/decisions/0012-dead-letter-replay.md.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from engine.validation import LoginRejected, validate_login
from ops.dead_letter_selection import Selection, iso_utc
from ops.replay_progress import PartitionProgress
from runtime.clock import now_us
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

def _admin(settings: Settings, timeout_s: float) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                               request_timeout_ms=int(timeout_s * 1000))


async def _partitions(admin: AIOKafkaAdminClient, topic: str) -> list[int]:
    """The partitions of ``topic``; DeadLetterError if it does not exist."""
    (described,) = await admin.describe_topics([topic])
    if described["error_code"] != 0 or not described["partitions"]:
        raise DeadLetterError(f"topic {topic!r} does not exist (run `positioning topics`, or "
                              "check POSITIONING_DLQ_TOPIC / POSITIONING_LOGINS_TOPIC)")
    return sorted(p["partition"] for p in described["partitions"])


async def _progress(admin: AIOKafkaAdminClient, group: str, topic: str,
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
    admin = _admin(settings, timeout_s)
    try:
        await admin.start()
        partitions = await _partitions(admin, topic)
        progress = (await _progress(admin, group or replay_group(settings), topic, partitions)
                    if with_progress else {})
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
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


# -- listing ---------------------------------------------------------------------------

@dataclass
class Listing:
    """``dlq list``: the matching dead letters (the latest ``limit``), counted by error type."""

    topic: str
    group: str
    total: int
    matched: list[DeadLetter]
    shown: list[DeadLetter]
    snapshot: Snapshot

    @property
    def counts(self) -> dict[str, int]:
        """Matching dead letters per error type, most first."""
        return dict(Counter(letter.error_type for letter in self.matched).most_common())

    @property
    def replayed(self) -> int:
        return sum(1 for letter in self.matched if self.snapshot.replayed(letter))

    def render(self) -> str:
        """The listing for a terminal: one block per record shown, then the counts."""
        lines = [f"{self.topic}: {self.total} dead letters; replay group {self.group}"]
        for letter in self.shown:
            topic, partition, offset = letter.source
            state = "replayed" if self.snapshot.replayed(letter) else "pending"
            lines.append(f"{iso_utc(letter.at_us)}  {letter.partition}:{letter.offset}  "
                         f"{letter.stage or '?'}/{letter.error_type}  from {topic or '?'}"
                         f"[{'?' if partition is None else partition}]"
                         f"@{'?' if offset is None else offset}  {state}")
            if letter.replayed_from:
                lines.append(f"    a failed replay of {letter.replayed_from}")
            lines.append(f"    error: {letter.error_message}")
            lines.append(f"    login: {_login_line(letter)}")
        counts = ", ".join(f"{kind} {n}" for kind, n in self.counts.items()) or "none"
        hidden = len(self.matched) - len(self.shown)
        lines.append(f"{len(self.matched)} matched ({self.replayed} replayed, "
                     f"{len(self.matched) - self.replayed} pending"
                     f"{f'; {hidden} older not shown' if hidden else ''}); "
                     f"by error type: {counts}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """One document: the records shown and the counts (of every match, not only those shown)."""
        return {
            "topic": self.topic, "replay_group": self.group,
            "high_watermarks": {str(p): end for p, end in self.snapshot.ends.items()},
            "counts": {"total": self.total, "matched": len(self.matched),
                       "shown": len(self.shown), "replayed": self.replayed,
                       "pending": len(self.matched) - self.replayed,
                       "by_error_type": self.counts},
            "records": [letter.to_json(self.snapshot.replayed(letter)) for letter in self.shown],
        }


def _login_line(letter: DeadLetter) -> str:
    """What the record's bytes are today: a login that decodes (and would be accepted), or not."""
    view = LoginView.of(letter.value)
    login = view.login
    if login is None:
        same = view.problem == f"undecodable: {letter.error_message}"
        return "still undecodable (the same error)" if same else view.problem or ""
    text = (f"user {login['user_id']!r}, ticket {login['ticket_id']}, ip {login['ip']}, "
            f"accepted {iso_utc(login['login_accepted_at'])}, "
            f"expires {iso_utc(login['expires_at'])}")
    return f"{text} ({view.problem})" if view.problem else f"decodes now: {text}"


async def list_dead_letters(settings: Settings, selection: Selection, limit: int | None = None,
                            timeout_s: float = DEFAULT_TIMEOUT_S) -> Listing:
    """The dead letters ``selection`` matches, oldest first; with ``limit``, only the latest
    ``limit`` of them are shown (the counts still cover every match).

    Raises: as ``read_dead_letters``.
    """
    snapshot = await read_dead_letters(settings, timeout_s)
    matched = sorted((r for r in snapshot.records if r.matches(selection)),
                     key=lambda r: (r.at_us, r.partition, r.offset))
    shown = matched if limit is None else matched[max(0, len(matched) - limit):] if limit else []
    return Listing(snapshot.topic, replay_group(settings), len(snapshot.records), matched,
                   shown, snapshot)


# -- replaying -------------------------------------------------------------------------

@dataclass
class ReplayReport:
    """What ``replay_dead_letters`` did (or, dry, would do)."""

    topic: str
    target: str
    group: str
    dry_run: bool
    replayed: list[DeadLetter]
    already: list[DeadLetter]
    failed_again: list[DeadLetter]
    """Selected dead letters that are failed replays (``replayed_from``), left out: they go
    again only when selected by ``--offsets``."""
    expired: int = 0
    """Replayed logins whose ticket had expired: their offers are tombstoned at once."""

    def summary(self) -> str:
        verb = "would be replayed" if self.dry_run else "replayed"
        text = (f"{len(self.replayed)} {verb} onto {self.target}, "
                f"{len(self.already)} already replayed (group {self.group})")
        if self.failed_again:
            text += (f"; {len(self.failed_again)} left out: they failed again after a replay "
                     "(select them with --offsets to replay them once more)")
        if self.expired:
            text += (f"; {self.expired} of them carry an expired ticket (the visit counts, "
                     "the offer is tombstoned at once)")
        return text


def _expired(letter: DeadLetter, at_us: int) -> bool:
    login = LoginView.of(letter.value).login
    return login is not None and int(login["expires_at"]) <= at_us


async def replay_dead_letters(settings: Settings, selection: Selection, *, dry_run: bool = False,
                              timeout_s: float = DEFAULT_TIMEOUT_S,
                              group: str | None = None) -> ReplayReport:
    """Put the selected dead letters not yet replayed back on ``logins``, and record them.

    Failed replays (a ``replayed_from`` header) are left out unless
    ``selection`` names offsets (``ReplayReport.failed_again``).

    Each goes with its original key and value and the provenance headers,
    through an idempotent producer with ``acks=all``; once every one is
    acknowledged, the replay group (``group``, default ``replay_group``)
    records them (merged with whatever another replay recorded meanwhile).
    With ``dry_run``, nothing is produced or recorded.

    Raises:
        DeadLetterError: a topic does not exist, reading took over ``timeout_s``,
            or not every replayed record was acknowledged (those that were are
            recorded; run the replay again for the rest).
        ProgressFull: recording the selection would not fit in the group's
            commit (nothing was produced).
        ProgressUnreadable: the group holds a commit this version cannot read.
        aiokafka.errors.KafkaError: the cluster did not answer.
    """
    group = group or replay_group(settings)
    snapshot = await read_dead_letters(settings, timeout_s, group=group)
    selected = [r for r in snapshot.records if r.matches(selection)]
    already = [r for r in selected if snapshot.replayed(r)]
    pending = [r for r in selected if not snapshot.replayed(r)]
    # A failed replay goes again only when named by its offsets: --all after a fix must not
    # loop the logins that fix did not help.
    failed_again = [r for r in pending if r.replayed_from and not selection.ranges]
    todo = [r for r in pending if not (r.replayed_from and not selection.ranges)]
    at = now_us()
    report = ReplayReport(snapshot.topic, settings.logins_topic, group, dry_run, todo, already,
                          failed_again, sum(1 for r in todo if _expired(r, at)))
    if dry_run:
        return report
    if not todo:
        # Committed again, so the group's offsets (kept `offsets.retention.minutes` after the
        # last commit) live as long as someone replays: decision 0012.
        await _record(settings, snapshot, group, [], timeout_s)
        return report
    _recorded(snapshot, todo)  # refuses a selection too scattered to record, before producing
    admin = _admin(settings, timeout_s)
    try:
        await admin.start()
        await _partitions(admin, settings.logins_topic)
    finally:
        await admin.close()
    acked = await _produce(settings, todo, at, timeout_s)
    try:
        async with asyncio.timeout(timeout_s):
            await _record(settings, snapshot, group, acked, timeout_s)
    except (TimeoutError, KafkaError) as exc:
        produced = ", ".join(letter.where for letter in acked[:20])
        more = f" and {len(acked) - 20} more" if len(acked) > 20 else ""
        raise DeadLetterError(
            f"{len(acked)} records were replayed onto {settings.logins_topic} but could not be "
            f"recorded in the group {group} ({type(exc).__name__}: {exc}): {produced}{more}. "
            "A replay run again puts them back once more; the worker counts a login once "
            "by its ticket id (docs/operations.md)") from exc
    if len(acked) < len(todo):
        raise DeadLetterError(
            f"only {len(acked)} of {len(todo)} replayed records were acknowledged by Kafka; "
            "those are recorded as replayed, run the replay again for the rest")
    return report


def _recorded(snapshot: Snapshot, letters: list[DeadLetter]) -> dict[int, PartitionProgress]:
    """The progress once ``letters`` are replayed, per partition they are in.

    Raises:
        ProgressFull: a partition's progress does not fit in a commit.
    """
    offsets: dict[int, list[int]] = {}
    for letter in letters:
        offsets.setdefault(letter.partition, []).append(letter.offset)
    after = {}
    for p, replayed in offsets.items():
        after[p] = snapshot.progress.get(p, PartitionProgress()).with_replayed(
            replayed, snapshot.log_start.get(p, 0))
        after[p].metadata()
    return after


async def _produce(settings: Settings, letters: list[DeadLetter], at_us: int,
                   timeout_s: float) -> list[DeadLetter]:
    """Produce each letter's replay to ``logins``; the letters Kafka acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                enable_idempotence=True,
                                request_timeout_ms=int(timeout_s * 1000))
    await producer.start()
    acked: list[DeadLetter] = []
    failures: list[BaseException] = []
    try:
        deliveries = [(letter, await producer.send(settings.logins_topic, letter.value,
                                                   key=letter.key,
                                                   headers=letter.replay_headers(at_us)))
                      for letter in letters]
        for letter, delivery in deliveries:
            try:
                await delivery
            except Exception as exc:  # counted and reported below: the caller raises
                failures.append(exc)
            else:
                acked.append(letter)
    finally:
        await producer.stop()
    if failures and not acked:
        raise DeadLetterError(f"Kafka acknowledged none of {len(letters)} replayed records: "
                              f"{failures[0]!r}")
    return acked


async def _record(settings: Settings, snapshot: Snapshot, group: str, letters: list[DeadLetter],
                  timeout_s: float) -> None:
    """Commit the replay group's progress with ``letters`` replayed, merged with the group's
    latest commit (another replay may have recorded more meanwhile). With no letters, the
    progress read at the start is committed again as it is, which keeps it from expiring."""
    after = (_recorded(snapshot, letters) if letters else
             {p: progress for p, progress in snapshot.progress.items()
              if progress.mark or progress.above})
    if not after:
        return
    admin = _admin(settings, timeout_s)
    try:
        await admin.start()
        latest = await _progress(admin, group, snapshot.topic, sorted(after))
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group,
                                enable_auto_commit=False,
                                request_timeout_ms=int(timeout_s * 1000))
    try:
        await consumer.start()
        tps = {p: TopicPartition(snapshot.topic, p) for p in after}
        consumer.assign(list(tps.values()))
        merged = {p: progress.merged(latest[p]) for p, progress in after.items()}
        await consumer.commit({tps[p]: (m.mark, m.metadata()) for p, m in merged.items()})
    finally:
        await consumer.stop()
