"""Faust's private hooks, turned into public hook methods for the worker.

The worker's transport (pipeline/transport.py) changes how Faust's aiokafka
driver builds its consumer and how it commits (docs/decisions/0001-own-the-commit.md),
and its table store changes how a RocksDB partition is opened
(pipeline/state_store.py). Faust offers no public way to do either, so the
base classes here override Faust's private methods and call public hooks
that the project's subclasses override instead:

- ``ConsumerThread.configure_worker_consumer(consumer)``: the worker's
  aiokafka consumer, just built, not started;
- ``ConsumerThread.on_consumer_started(consumer)``: the same, started;
- ``Consumer.thread_class``: the consumer thread class to run;
- ``Consumer.commit_offsets(offsets)``: every commit Faust makes, with
  ``faust_commit(offsets)`` to commit through Faust's own path;
- ``RocksDBOptions.open_rocksdict(path, options, access_type)``: opening one
  table partition with rocksdict; ``RocksDBStore.options_class``: which
  ``RocksDBOptions`` a store uses.

Private names touched (tests/unit/test_compat.py checks each exists):

- ``faust.transport.drivers.aiokafka.AIOKafkaConsumerThread``:
  ``_create_worker_consumer(transport)`` (overridden), ``_consumer`` (read);
- ``faust.transport.drivers.aiokafka.Consumer``: ``_new_consumer_thread()``
  and ``_commit(offsets)`` (overridden);
- ``faust.streams.Stream._set_current_event(event)`` (called by
  ``make_current``): the worker begins a batch of events after the stream
  yielded them, and a table write goes to the changelog partition of the
  current event's partition.

Undocumented public names relied on (checked the same way):
``AIOKafkaConsumerThread.on_start`` and ``.transport``,
``Consumer.seek_to_committed``, and the store's ``RocksDBOptions.open``,
``.as_options``, ``.use_rocksdict``, ``.ttl``, ``Store.rocksdb_options``,
``.options``, ``.use_rocksdict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import rocksdict
from faust import streams as faust_streams
from faust.stores import rocksdb as faust_rocksdb
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from runtime.compat import Version, require_version

PRIVATE_NAMES: dict[type, tuple[str, ...]] = {
    faust_aiokafka.AIOKafkaConsumerThread: ("_create_worker_consumer", "_consumer"),
    faust_aiokafka.Consumer: ("_new_consumer_thread", "_commit"),
    faust_streams.Stream: ("_set_current_event",),
}
UNDOCUMENTED_NAMES: dict[type, tuple[str, ...]] = {
    faust_aiokafka.AIOKafkaConsumerThread: ("on_start", "transport"),
    faust_aiokafka.Consumer: ("seek_to_committed", "loop", "beacon", "app"),
    faust_rocksdb.RocksDBOptions: ("open", "as_options", "use_rocksdict", "ttl"),
    faust_rocksdb.Store: ("rocksdb_options", "options", "use_rocksdict"),
}
TESTED: tuple[Version, Version] = ((0, 15), (0, 16))  # [from, to); tested with 0.15.3


def check_version() -> str:
    """The installed faust-streaming version; ``UnsupportedVersion`` outside ``TESTED``."""
    return require_version("faust-streaming", TESTED, __name__)


check_version()

Transport = faust_aiokafka.Transport


def make_current(stream: Any, event: Any) -> None:
    """Make ``event`` the current event of ``stream`` in the running task, as the stream
    does before it yields an event: a table write then goes to the changelog partition
    of that event's partition (Faust's ``Table.partition_for_key`` reads the current
    event). ``stream`` is the agent's stream, ``event`` one it yielded."""
    stream._set_current_event(event)


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread, with public hooks around its consumer."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        self.configure_worker_consumer(consumer)
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        self.on_consumer_started(self._consumer)

    def create_worker_consumer(self) -> Any:
        """Build (not start) the aiokafka consumer this thread would run for a worker."""
        return self._create_worker_consumer(self.transport)

    def configure_worker_consumer(self, consumer: Any) -> None:
        """Hook: adjust the worker's aiokafka consumer before it starts (default: nothing)."""

    def on_consumer_started(self, consumer: Any) -> None:
        """Hook: the thread's aiokafka consumer has started (default: nothing)."""


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, running ``thread_class`` and committing through a hook."""

    thread_class: type[ConsumerThread] = ConsumerThread

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return self.thread_class(self, loop=self.loop, beacon=self.beacon)

    @property
    def consumer_thread(self) -> ConsumerThread:
        """The thread running this consumer's aiokafka client."""
        thread = self._thread
        assert isinstance(thread, ConsumerThread)
        return thread

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        return await self.commit_offsets(offsets)

    async def commit_offsets(self, offsets: Mapping[TP, int]) -> bool:
        """Hook: every commit Faust makes (offsets to commit, per partition);
        whether it committed. Default: Faust's own commit."""
        return await self.faust_commit(offsets)

    async def faust_commit(self, offsets: Mapping[TP, int]) -> bool:
        """Commit ``offsets`` the way Faust does; whether it committed."""
        return bool(await super()._commit(offsets))


class RocksDBOptions(faust_rocksdb.RocksDBOptions):
    """Faust's RocksDB options, with opening a rocksdict partition a public hook."""

    def open(self, path: Path, *, read_only: bool = False) -> Any:
        """Open one partition's database (Faust 0.15's ``open``, its rocksdict branch a hook)."""
        if not self.use_rocksdict:
            return super().open(path, read_only=read_only)
        access = (rocksdict.AccessType.read_write() if self.ttl is None
                  else rocksdict.AccessType.with_ttl(self.ttl))
        return self.open_rocksdict(path, self.as_options(), access)

    def open_rocksdict(self, path: Path, options: rocksdict.Options,
                       access_type: rocksdict.AccessType) -> rocksdict.Rdict:
        """Hook: open the partition at ``path`` with rocksdict (default: as Faust does)."""
        db = rocksdict.Rdict(str(path), options=options, access_type=access_type)
        db.set_read_options(rocksdict.ReadOptions())
        return db


class RocksDBStore(faust_rocksdb.Store):
    """Faust's RocksDB table store, its options an ``options_class``."""

    options_class: type[RocksDBOptions] = RocksDBOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rocksdb_options = self.options_class(**(self.options or {}),
                                                  use_rocksdict=self.use_rocksdict)
