"""Tombstones for expired offers, found by reading the ``offers`` topic itself.

The compacted ``offers`` topic is the one durable list of every offer not
yet deleted, with each offer's expiry in its ``expires_at`` header. So the
workers do not keep a list of their own, which a crash, a restart or a
partition move could lose: they share the partitions of ``offers`` in a
consumer group of their own (``<worker id>-expiry``), read their partitions
from the beginning after every rebalance, and tombstone each offer once it
expired and its partition has been read to the end it had at assignment
(only then is it known that no later record replaced the offer).

Nothing is committed in that group: every assignment reads its partitions
again, which costs one pass over the live offers and keeps the rule simple.
With several workers the group splits the partitions of ``offers``; a
revocation drops the revoked partitions' offers from the index (aiokafka
returns no records of a partition no longer assigned), so the new owner
tombstones them once it has read them again. A tombstone sent twice around a
move (both owners, once each) is harmless: it deletes what is deleted.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from pipeline.offer_repair import OfferRepairer
from runtime.clock import now_us
from runtime.kafka_security import KafkaAccess
from schemas.codec import DecodeError, offer_codec
from schemas.events import EXPIRES_AT_HEADER

log = logging.getLogger(__name__)

SEND_CONCURRENCY = 256  # tombstones handed to ``send`` at once (and signed together)
# An offer matters to expiry only once it expires, minutes later: the broker may gather a
# MiB or wait half a second before answering, so this consumer fetches about twice a
# second whatever the traffic, not once per offer (docs/decisions/0014-answer-on-the-first-record.md).
FETCH_WAIT_MS = 500
FETCH_MIN_BYTES = 1024 * 1024



class ExpiryIndex:
    """Live offers of the assigned partitions, soonest expiry first. Pure, no I/O.

    ``targets`` are the end offsets at assignment; a partition is loaded once
    read up to its target, and only loaded partitions give up tombstones.
    """

    def __init__(self) -> None:
        self._expiry: dict[bytes, tuple[int, int]] = {}   # ticket -> (partition, expires_at µs)
        self._heap: list[tuple[int, bytes]] = []
        self._targets: dict[int, int] = {}
        self._loaded: set[int] = set()

    def assign(self, targets: dict[int, int]) -> None:
        """Partitions now ours, with their end offsets (they are read from the beginning)."""
        for partition, target in targets.items():
            self._targets[partition] = target
            self._loaded.discard(partition)

    def revoke(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        for partition in gone:
            self._targets.pop(partition, None)
            self._loaded.discard(partition)
        self._expiry = {t: v for t, v in self._expiry.items() if v[0] not in gone}
        # Reading a partition again pushes its offers again: keep only live entries.
        self._heap = [(e, t) for e, t in self._heap
                      if t in self._expiry and self._expiry[t][1] == e]
        heapq.heapify(self._heap)

    def position(self, partition: int, next_offset: int) -> None:
        """The partition has been read up to ``next_offset`` (exclusive)."""
        target = self._targets.get(partition)
        if target is not None and next_offset >= target:
            self._loaded.add(partition)

    @property
    def loading(self) -> set[int]:
        return set(self._targets) - self._loaded

    @property
    def loaded(self) -> set[int]:
        """Partitions read up to the end they had at assignment."""
        return set(self._loaded)

    def apply(self, partition: int, ticket: bytes, expires_at: int | None) -> None:
        """A record: an offer expiring at ``expires_at`` (µs), or a tombstone (None).

        Records are taken even before ``assign``: the consumer's fetch runs
        while the rebalance listener seeks and asks for the ends, so the first
        records of a new assignment can come first.
        """
        if expires_at is None:
            self._expiry.pop(ticket, None)
            return
        self._expiry[ticket] = (partition, expires_at)
        heapq.heappush(self._heap, (expires_at, ticket))

    def due(self, now: int) -> list[tuple[bytes, int]]:
        """``(ticket, expiry)`` of loaded partitions' offers expired by ``now`` (each once)."""
        out = []
        deferred = []
        while self._heap and self._heap[0][0] <= now:
            expires_at, ticket = heapq.heappop(self._heap)
            current = self._expiry.get(ticket)
            if current is None or current[1] != expires_at:
                continue  # deleted, replaced or revoked since
            if current[0] not in self._loaded:
                deferred.append((expires_at, ticket))
                continue
            del self._expiry[ticket]
            out.append((ticket, expires_at))
        for entry in deferred:
            heapq.heappush(self._heap, entry)
        return out

    def __len__(self) -> int:
        return len(self._expiry)


def expiry_of(record: Any, codec: Any) -> int | None:
    """The offer's expiry in µs from its header, else from the record; None if unreadable."""
    for name, raw in record.headers or ():
        if name == EXPIRES_AT_HEADER:
            try:
                return int(raw)
            except ValueError:
                break
    try:
        return int(codec.decode(record.value)["expires_at"])
    except (DecodeError, KeyError, TypeError, ValueError):
        return None


class _Listener(ConsumerRebalanceListener):
    def __init__(self, expirer: Expirer) -> None:
        self.expirer = expirer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.expirer.index.revoke(tp.partition for tp in revoked)
        if self.expirer.repairer is not None:
            self.expirer.repairer.revoke(tp.partition for tp in revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.expirer.on_assigned(assigned)


class Expirer:
    """Reads ``offers`` in a consumer group and tombstones expired offers through ``send``.

    ``send([(ticket_id, expires_at), ...])`` must return once those tombstones are
    acknowledged (it may retry for as long as it takes). ``run`` returns only when
    cancelled; a Kafka error it cannot ride out propagates.

    With a ``repairer`` (offers are signed), only records an edge would keep
    count for expiry, so a forged record can neither hold an offer back nor
    end it early, and tickets whose last record an edge would not keep are
    repaired at each sweep (pipeline/offer_repair.py).
    """

    def __init__(self, bootstrap_servers: str, topic: str, group_id: str,
                 send: Callable[[list[tuple[bytes, int]]], Awaitable[None]],
                 sweep_every_s: float,
                 on_tombstone: Callable[[], None] = lambda: None,
                 *, access: KafkaAccess, repairer: OfferRepairer | None = None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.access = access
        self.topic = topic
        self.group_id = group_id
        self.send = send
        self.sweep_every_s = sweep_every_s
        self.on_tombstone = on_tombstone
        self.index = ExpiryIndex()
        self.repairer = repairer
        self.unreadable = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._codec = offer_codec()

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        assert self._consumer is not None
        if not assigned:
            return
        for tp in assigned:
            await self._consumer.seek_to_beginning(tp)
        ends = await self._consumer.end_offsets(list(assigned))
        begins = await self._consumer.beginning_offsets(list(assigned))
        self.index.assign({tp.partition: end for tp, end in ends.items()})
        for tp, begin in begins.items():
            self.index.position(tp.partition, begin)
        log.info("expiry: reading %s partitions %s to their ends %s", self.topic,
                 sorted(tp.partition for tp in assigned),
                 {tp.partition: end for tp, end in ends.items()})

    async def run(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=self.group_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=10_000, heartbeat_interval_ms=1_000,
            max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_wait_ms=FETCH_WAIT_MS,
            fetch_min_bytes=FETCH_MIN_BYTES, **self.access.aiokafka_options())
        self._consumer.subscribe([self.topic], listener=_Listener(self))
        await self._consumer.start()
        try:
            next_sweep = time.monotonic()
            while True:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=10_000)
                for tp, records in batches.items():
                    for record in records:
                        if record.key is None:
                            self.unreadable += 1
                            continue
                        if self.repairer is not None:
                            version = self.repairer.seen(tp.partition, record.offset, record.key,
                                                         record.value, record.headers)
                            if version is not None:
                                self.index.apply(tp.partition, record.key,
                                                 None if version[1] else version[0])
                            continue
                        expires_at = None if record.value is None else expiry_of(record,
                                                                                 self._codec)
                        if record.value is not None and expires_at is None:
                            self.unreadable += 1
                            log.warning("expiry: %s[%d]@%d has no readable expiry; skipped",
                                        self.topic, tp.partition, record.offset)
                            continue
                        self.index.apply(tp.partition, record.key, expires_at)
                for partition in self.index.loading:
                    tp = TopicPartition(self.topic, partition)
                    if tp in self._consumer.assignment():
                        self.index.position(partition, await self._consumer.position(tp))
                if time.monotonic() >= next_sweep:
                    await self.sweep()
                    next_sweep = time.monotonic() + self.sweep_every_s
        finally:
            await self._consumer.stop()

    async def sweep(self) -> int:
        """Tombstone every due offer (acknowledged before this returns), and repair what is
        due; how many tombstones."""
        now = now_us()
        if self.repairer is not None:
            await self.repairer.repair(now, self.index.loaded)
        due = self.index.due(now)
        for start in range(0, len(due), SEND_CONCURRENCY):
            await self.send(due[start:start + SEND_CONCURRENCY])
        for _ in due:
            self.on_tombstone()
        return len(due)
