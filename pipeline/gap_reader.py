"""Reading records of ``logins`` that Faust never handed to the worker's agent.

Faust 0.15 can drop records it already took from aiokafka: the rest of a
batch when a rebalance starts or the generation changes, and re-read records
below its own read offset after a seek (``Consumer.getmany`` and
``_drain_messages``). The worker's ``OffsetLedger`` sees the jump; this
module fetches exactly the missing offsets with a consumer of its own (no
group, the partition assigned by hand), so the agent processes them, in
order, before the event that revealed the gap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition

from runtime.kafka_security import KafkaAccess


class GapUnreadable(RuntimeError):
    """The missing records could not be read (gone from the log, or the broker is away)."""


class SourceRecord(NamedTuple):
    """The fields of a ``logins`` record the worker uses, from Faust or from this reader."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


async def read_range(bootstrap_servers: str, topic: str, partition: int, start: int,
                     end: int, timeout_s: float = 60.0, *,
                     access: KafkaAccess) -> list[SourceRecord]:
    """Records ``start`` to ``end`` (exclusive) of one partition, in order, read as
    ``access``.

    Raises GapUnreadable if any of them cannot be read within ``timeout_s``.
    """
    options = access.aiokafka_options()
    # read_committed as the worker's own consumer: a replay's aborted records are no logins.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="none",
                                isolation_level="read_committed", **options)
    tp = TopicPartition(topic, partition)
    records: list[SourceRecord] = []
    try:
        await consumer.start()
        consumer.assign([tp])
        consumer.seek(tp, start)
        async with asyncio.timeout(timeout_s):
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                records.extend(SourceRecord(topic, partition, r.offset, r.key, r.value, r.headers)
                               for r in batch.get(tp, ()) if start <= r.offset < end)
    except Exception as exc:
        raise GapUnreadable(f"{topic}[{partition}] offsets {start}..{end - 1}: {exc!r}") from exc
    finally:
        await consumer.stop()
    return records


async def read_offsets(bootstrap_servers: str, topic: str, partition: int,
                       offsets: Sequence[int], timeout_s: float = 60.0, *,
                       access: KafkaAccess) -> dict[int, SourceRecord]:
    """The records at ``offsets`` of one partition, by offset, read as ``access``; an offset
    whose record is gone (compacted, or below the log start) is left out.

    Raises GapUnreadable if they cannot be read within ``timeout_s``.
    """
    options = access.aiokafka_options()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                isolation_level="read_committed", **options)
    tp = TopicPartition(topic, partition)
    found: dict[int, SourceRecord] = {}
    try:
        await consumer.start()
        consumer.assign([tp])
        async with asyncio.timeout(timeout_s):
            end = (await consumer.end_offsets([tp]))[tp]
            for offset in sorted(set(offsets)):
                if offset in found or offset >= end:
                    continue
                consumer.seek(tp, offset)
                # The first record at or after the offset says whether it is still there.
                while (position := await consumer.position(tp)) <= offset and position < end:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    records = [r for r in batch.get(tp, ()) if r.offset >= offset]
                    if records:
                        for r in records:
                            found[r.offset] = SourceRecord(topic, partition, r.offset, r.key,
                                                           r.value, r.headers)
                        break
    except Exception as exc:
        raise GapUnreadable(f"{topic}[{partition}] offsets {sorted(offsets)[:5]}...: "
                            f"{exc!r}") from exc
    finally:
        await consumer.stop()
    return {o: found[o] for o in offsets if o in found}
