"""`positioning dlq replay`: selected dead letters back on ``logins``, each once.

Each goes with its original key and value and the provenance headers
``replayed_from`` (``<dead-letter topic>:<partition>:<offset>``) and
``replayed_at``, through an idempotent producer with ``acks=all``; then the
replay group (``replay_group``; the format is in ops/replay_progress.py)
records them, so a second replay of the same selection replays nothing. A
replay that fails again is a new dead letter carrying ``replayed_from``; it
is replayed again only when selected by its offsets. A replayed login keeps
its ticket id, so even a record replayed twice (a crash between producing
and recording) is counted once by the worker while the user has had fewer
than 32 other logins since (engine/state.py). The choices and their limits
are in docs/decisions/0012-dead-letter-replay.md.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from ops.dead_letter_selection import Selection
from ops.dead_letters import (
    DEFAULT_TIMEOUT_S,
    DeadLetter,
    DeadLetterError,
    LoginView,
    Snapshot,
    admin_client,
    read_dead_letters,
    recorded_progress,
    replay_group,
    topic_partitions,
)
from ops.replay_progress import PartitionProgress
from runtime.clock import now_us
from runtime.kafka_security import Role, client_options
from runtime.settings import Settings


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
    admin = admin_client(settings, timeout_s)
    try:
        await admin.start()
        await topic_partitions(admin, settings.logins_topic)
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
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.OPS), acks="all",
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
    admin = admin_client(settings, timeout_s)
    try:
        await admin.start()
        latest = await recorded_progress(admin, group, snapshot.topic, sorted(after))
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.OPS), group_id=group,
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
