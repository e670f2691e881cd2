"""`positioning dlq replay`: selected dead letters back on ``logins``, each once.

Each goes with its original key and value and the provenance headers
``replayed_from`` (``<dead-letter topic>:<partition>:<offset>``) and
``replayed_at``. A replay is one Kafka transaction (KIP-98): the records and
the replay group's new progress (``replay_group``; the format is in
ops/replay_progress.py) are committed together, so a second replay of the
same selection replays nothing, a crash leaves nothing half done, and two
replays at once are fenced by the transactional id they share. The worker
reads ``logins`` read_committed, so an aborted replay is never processed. A
replay that fails again is a new dead letter carrying ``replayed_from``; it
is replayed again only when selected by its offsets. The choices and their
limits are in docs/decisions/0012-dead-letter-replay.md.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from ops.dead_letter_selection import Selection
from ops.dead_letters import (
    DEFAULT_TIMEOUT_S,
    DeadLetter,
    DeadLetterError,
    LoginView,
    Snapshot,
    admin_client,
    read_dead_letters,
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

    The records and the replay group's new progress (``group``, default
    ``replay_group``) go in one Kafka transaction whose transactional id is
    the group's name (KIP-98): all of them are replayed and recorded, or
    none is. Starting the producer fences every earlier replay of the same
    group (its open transaction is aborted), and the progress is read only
    after that, so two replays at once never put a dead letter back twice:
    whichever starts last wins, and the other fails with nothing replayed.
    With ``dry_run``, nothing is produced or recorded and nothing is fenced.

    Raises:
        DeadLetterError: a topic does not exist, reading took over ``timeout_s``,
            another replay of the group fenced this one, or the transaction
            failed (nothing of this run was replayed: run it again).
        ProgressFull: recording the selection would not fit in the group's
            commit (nothing was produced).
        ProgressUnreadable: the group holds a commit this version cannot read.
        aiokafka.errors.KafkaError: the cluster did not answer.
    """
    group = group or replay_group(settings)
    if dry_run:
        snapshot = await read_dead_letters(settings, timeout_s, group=group)
        return _plan(settings, snapshot, selection, group, dry_run=True)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers,
                                **client_options(settings, Role.OPS), acks="all",
                                enable_idempotence=True, transactional_id=group,
                                request_timeout_ms=int(timeout_s * 1000))
    await producer.start()   # InitProducerId: fences any other replay of this group
    try:
        snapshot = await read_dead_letters(settings, timeout_s, group=group)
        report = _plan(settings, snapshot, selection, group, dry_run=False)
        todo = report.replayed
        # With nothing to replay the progress is committed again as it is, so the group's
        # offsets (kept `offsets.retention.minutes` after the last commit) live as long as
        # someone replays: decision 0012.
        after = _recorded(snapshot, todo) if todo else {
            p: progress for p, progress in snapshot.progress.items()
            if progress.mark or progress.above}
        if todo:
            admin = admin_client(settings, timeout_s)
            try:
                await admin.start()
                await topic_partitions(admin, settings.logins_topic)
            finally:
                await admin.close()
        if not todo and not after:
            return report
        at = now_us()
        deliveries: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout(timeout_s), producer.transaction():
                for letter in todo:
                    deliveries.append(await producer.send(
                        settings.logins_topic, letter.value, key=letter.key,
                        headers=letter.replay_headers(at)))
                # Every record acknowledged before the progress joins the transaction.
                for outcome in await asyncio.gather(*deliveries, return_exceptions=True):
                    if isinstance(outcome, BaseException):
                        raise outcome
                await producer.send_offsets_to_transaction(
                    {TopicPartition(snapshot.topic, p): (m.mark, m.metadata())
                     for p, m in after.items()}, group)
        except ProducerFenced as exc:
            raise DeadLetterError(
                f"another `dlq replay` of the group {group} started meanwhile and fenced this "
                f"one: nothing of this run was replayed (the other replays what is "
                f"pending)") from exc
        except (TimeoutError, KafkaError) as exc:
            raise DeadLetterError(
                f"the replay of {len(todo)} dead letters onto {settings.logins_topic} was "
                f"aborted ({type(exc).__name__}: {exc}): nothing of it was replayed or "
                "recorded; run the replay again") from exc
        finally:
            # A fenced or aborted transaction fails its records' deliveries too: they are
            # reported by the error above, so each is marked seen, not left to the loop.
            for delivery in deliveries:
                if delivery.done() and not delivery.cancelled():
                    delivery.exception()
        return report
    finally:
        await producer.stop()


def _plan(settings: Settings, snapshot: Snapshot, selection: Selection, group: str, *,
          dry_run: bool) -> ReplayReport:
    """What a replay of ``selection`` does, given what ``snapshot`` holds: the pending
    dead letters to replay, those replayed before, and failed replays left out (they go
    again only when named by their offsets: --all after a fix must not loop the logins
    that fix did not help)."""
    selected = [r for r in snapshot.records if r.matches(selection)]
    already = [r for r in selected if snapshot.replayed(r)]
    pending = [r for r in selected if not snapshot.replayed(r)]
    failed_again = [r for r in pending if r.replayed_from and not selection.ranges]
    todo = [r for r in pending if not (r.replayed_from and not selection.ranges)]
    return ReplayReport(snapshot.topic, settings.logins_topic, group, dry_run, todo, already,
                        failed_again, sum(1 for r in todo if _expired(r, now_us())))


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
