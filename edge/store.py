"""The edge node's local copy of every offer, in RocksDB (rocksdict), with its offsets.

Layout (raw bytes keys and values):

- ``<ticket_id>`` → 8-byte expiry (µs, big-endian) + 8-byte applied-at (µs)
  + a format byte + the offer: ``J`` the JSON the node serves, ``A`` the
  Avro record exactly as it came off Kafka, ``S`` that record with its
  signature headers, not checked yet (edge/unverified.py), or ``R`` a
  revocation with the version of its tombstone. A node that is catching up
  (bootstrapping a million offers) stores Avro, which costs no decode; a
  live node stores JSON, so a lookup serves bytes as they are. An Avro entry
  is turned into JSON the first time it is read, and once the node has caught
  up a background pass renders the rest.
- ``\\x00offset\\x00<partition>`` → the partition's next offset (8 bytes).
  Written in the same WriteBatch as the records it covers, so after any
  crash data and offsets agree: a restart resumes exactly where it stopped.

Writes while catching up skip RocksDB's write-ahead log, which a bootstrap
would otherwise pay for every record. That keeps the guarantee: a crash
loses at most the writes since the last memtable flush, records and offsets
together, and RocksDB recovers a prefix of the writes,
so the node re-reads from older offsets with no gap. The store flushes every
``flush_every`` unlogged records (so a crash mid-bootstrap does not start over),
and before the first logged ``apply`` (``make_durable``, when the node goes
live), so logged records and offsets never land on top of unflushed unlogged
ones. The other writes (rendering an entry as JSON, sweeping expired ones)
only rewrite or drop an entry whose record would be read again anyway.

Of two records for one ticket the newer wins, whatever order they come in:
an offer's version is its expiry, which only grows for a ticket (a retried
login extends it), and a tombstone's the expiry of the offer it ends, kept
with the revocation. ``apply`` refuses an offer older than what is stored, or
no newer than a revocation, and a tombstone older than the stored offer; so
a replayed old record never replaces a newer one (a tombstone without a
version, from an unsigned producer, always applies).

Expired offers are never served (the ticket says when it expires, and so does
the entry); they are swept out for space by a cursor that walks the store a
slice at a time, so applying a record costs one put, not two.

Ticket ids are base64url, so they never start with ``\\x00``.
"""

from __future__ import annotations

import struct
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from rocksdict import (
    BlockBasedOptions,
    Cache,
    DataBlockIndexType,
    Options,
    WriteBatch,
    WriteOptions,
)

from edge import unverified
from runtime.rocksdb import open_keeping_options
from schemas.offer_versions import replaces

OFFSET_PREFIX = b"\x00offset\x00"
ALL_JSON_KEY = b"\x00all-json"  # present while no entry is stored as Avro
FIRST_OFFER_KEY = b"\x02"  # above the offsets and markers, below every base64url ticket id
_U64 = struct.Struct(">Q")
_HEADER = struct.Struct(">QQc")
JSON = b"J"
AVRO = b"A"
REVOKED = b"R"  # a tombstone, remembered until any ticket it could concern has expired
SIGNED = b"S"   # a signed Avro record whose signature is still to be checked


class StoredOffer(NamedTuple):
    """One stored entry as read (a named tuple: one is built per lookup)."""

    expires_at: int   # µs (for a revocation: until when it is remembered)
    applied_at: int   # µs, when this node applied it
    payload: bytes    # JSON to serve, the Avro record, or edge/unverified.py's; empty if revoked
    is_json: bool
    revoked: bool = False
    unverified: bool = False  # its signature is still to be checked (edge/unverified.py)


def _entry(raw: bytes) -> StoredOffer:
    expires_at, applied_at, kind = _HEADER.unpack_from(raw)
    if kind == REVOKED:  # its body is the tombstone's version, nothing to serve
        return StoredOffer(expires_at, applied_at, b"", False, True)
    return StoredOffer(expires_at, applied_at, raw[_HEADER.size:], kind == JSON, False,
                       kind == SIGNED)


Verify = Callable[[bytes, int, bytes], "str | None"]
"""``verify(ticket_id, expires_at, unverified payload)``: None if its signature holds, else why."""


class Applied(NamedTuple):
    """What ``OfferStore.apply`` did not apply: indexes of changes refused as older than what
    is stored, indexes (and why) of unverified changes that failed their check, and stored
    unverified entries (and why) that failed theirs and were deleted."""

    stale: list[int]
    refused: list[tuple[int, str]]
    dropped: list[tuple[bytes, str]]


class Change(NamedTuple):
    """One record of the offers topic, ready to apply.

    A named tuple, not a dataclass: a bootstrap makes one per record, and a
    tuple is the cheapest object Python builds.
    """

    ticket_id: bytes
    payload: bytes | None  # None: a tombstone
    expires_at: int = 0    # µs; for a tombstone, its version: the expiry it ends (0: none)
    is_json: bool = False
    unverified: bool = False  # payload is edge/unverified.py's: signature not checked yet


def _version(raw: bytes) -> tuple[int, bool]:
    """A stored entry's version, and whether it is a revocation."""
    expires_at, _, kind = _HEADER.unpack_from(raw)
    if kind == REVOKED:
        body = raw[_HEADER.size:]
        return (_U64.unpack(body)[0] if len(body) == _U64.size else 0), True
    return expires_at, False


def supersedes(change: Change, stored: tuple[int, bool] | None) -> bool:
    """Whether ``change`` may replace an entry of version and kind ``stored`` (None: none):
    schemas/offer_versions.py's rule."""
    return replaces(change.expires_at, change.payload is None, stored)


def _options(block_cache_mb: int) -> Options:
    """Tuned for point lookups: a block cache of the given size, bloom filters, hashed data blocks.

    The store opens through ``open_keeping_options``, so a restart keeps them.
    """
    table = BlockBasedOptions()
    table.set_block_cache(Cache(block_cache_mb * 1024 * 1024))
    table.set_bloom_filter(10, False)
    table.set_data_block_index_type(DataBlockIndexType.binary_and_hash())
    table.set_data_block_hash_ratio(0.75)
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_write_buffer_size(64 * 1024 * 1024)
    opts.set_max_write_buffer_number(4)
    opts.increase_parallelism(2)
    opts.set_block_based_table_factory(table)
    opts.set_memtable_prefix_bloom_ratio(0.02)
    opts.set_memtable_whole_key_filtering(True)
    return opts


class StoreDamaged(RuntimeError):
    """RocksDB reports the store's files corrupt or unreadable (a damaged file, a failing
    disk). The store is a copy of the topic: ``open_or_rebuild`` moves it aside and starts
    a new one, which the node fills from the topic."""


DAMAGE_MARKS = ("Corruption", "IO error")  # RocksDB Status strings rocksdict raises with


def _damaged(exc: Exception) -> bool:
    return str(exc).startswith(DAMAGE_MARKS)


def open_or_rebuild(path: Path, **options: Any) -> tuple[OfferStore, Path | None]:
    """The store under ``path``; if its files are damaged, or a node marked it for a rebuild
    (``mark_for_rebuild``), a new empty one, the old moved aside to
    ``offers.rocksdb.damaged-<time>`` (returned) for a post-mortem.

    Raises StoreDamaged: a new store cannot be made either (the disk itself fails).
    """
    marker = path / REBUILD_MARKER
    if not marker.exists():
        try:
            return OfferStore(path, **options), None
        except Exception as exc:
            if not _damaged(exc):
                raise
    moved = path / f"offers.rocksdb.damaged-{time.strftime('%Y%m%dT%H%M%S')}"
    if (path / "offers.rocksdb").exists():
        (path / "offers.rocksdb").rename(moved)
    marker.unlink(missing_ok=True)
    try:
        return OfferStore(path, **options), moved
    except Exception as exc:
        raise StoreDamaged(f"cannot make a new store under {path}: {exc}") from None


REBUILD_MARKER = "REBUILD"


def mark_for_rebuild(path: Path) -> None:
    """Have the next ``open_or_rebuild`` of ``path`` start a new store (a read failed)."""
    (path / REBUILD_MARKER).write_text("a read of this store failed; rebuild it from the topic\n")


class OfferStore:
    """Point lookups by ticket id; batch application of topic records with their offsets."""

    def __init__(self, path: Path, flush_every: int = 100_000, block_cache_mb: int = 256,
                 remember_revoked_us: int = 900 * 1_000_000) -> None:
        """``remember_revoked_us``: how long a tombstone is kept as a revocation (the
        ticket TTL: no ticket it could concern outlives that)."""
        self.remember_revoked_us = remember_revoked_us
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = open_keeping_options(path / "offers.rocksdb", _options(block_cache_mb))
        self._cursors = {"sweep": FIRST_OFFER_KEY, "render": FIRST_OFFER_KEY}
        self._unlogged = WriteOptions()
        # rocksdict's type stub declares disable_wal a method; it is a property.
        self._unlogged.disable_wal = True  # type: ignore[method-assign, assignment]
        self.flush_every = flush_every
        self._unlogged_pending = False  # unlogged writes not yet flushed and waited for
        self._since_flush = 0           # unlogged records since the last flush started

    def close(self) -> None:
        self.make_durable()
        self._db.close()

    def make_durable(self) -> None:
        """Flush what was written without the log; logged writes may follow."""
        if self._unlogged_pending:
            self._db.flush(wait=True)
            self._unlogged_pending = False
            self._since_flush = 0

    def get(self, ticket_id: bytes) -> StoredOffer | None:
        """The entry of ``ticket_id``, or None. Raises StoreDamaged: RocksDB cannot read it."""
        try:
            raw = self._db.get(ticket_id)
        except Exception as exc:
            if _damaged(exc):
                raise StoreDamaged(str(exc)) from None
            raise
        if raw is None:
            return None
        return _entry(raw)

    def delete(self, ticket_id: bytes) -> None:
        """Forget one entry (an unverified offer that failed its check when read)."""
        self._db.delete(ticket_id)

    def replace_with_json(self, ticket_id: bytes, stored: StoredOffer, body: bytes) -> None:
        """Keep the rendered JSON of an offer that was stored as Avro (read once, render once)."""
        self._db.put(ticket_id, _HEADER.pack(stored.expires_at, stored.applied_at, JSON) + body)

    def offsets(self) -> dict[int, int]:
        """Next offset to read, per partition, as stored with the data."""
        out = {}
        it = self._db.iter()
        it.seek(OFFSET_PREFIX)
        while it.valid():
            key = it.key()
            if not key.startswith(OFFSET_PREFIX):
                break
            out[int(key[len(OFFSET_PREFIX):])] = _U64.unpack(it.value())[0]
            it.next()
        return out

    def apply(self, changes: Sequence[Change], next_offsets: dict[int, int],
              applied_at: int, logged: bool = True, verify: Verify | None = None) -> Applied:
        """Apply records and advance the partitions' offsets in one atomic write.

        ``next_offsets`` may run past the last change: records that were
        skipped (undecodable) still count as read. ``logged=False`` skips the
        write-ahead log (catching up; see the module docstring). Changes older
        than what is stored are refused (``Applied.stale``).

        An unverified change (kind ``S``) is stored unchecked unless it would
        replace an entry or share its ticket with another change of the batch:
        then ``verify`` checks it now (refused: ``Applied.refused``), and checks
        an unverified entry it is compared with (deleted if it fails:
        ``Applied.dropped``). So a record that fails its check never takes the
        place of one that passes, and nodes that check at once and nodes that
        check later end the same.
        """
        batch = WriteBatch(raw_mode=True)
        revoked_head = _HEADER.pack(applied_at + self.remember_revoked_us, applied_at, REVOKED)
        out = Applied([], [], [])
        seen: dict[bytes, tuple[int, bool]] = {}  # this batch's own latest, by ticket
        keys: list[Any] = [c.ticket_id for c in changes]  # (rocksdict's stub: a list of keys)
        stored = self._db.get(keys) if changes else []
        assert isinstance(stored, list)
        shared = ({k for k, n in Counter(keys).items() if n > 1}
                  if verify is not None and len(keys) > 1 else set())
        checked: set[bytes] = set()  # tickets whose stored entry was checked in this batch
        for i, change in enumerate(changes):
            ticket_id = change.ticket_id
            before = seen.get(ticket_id)
            raw = stored[i]
            if before is None and raw is not None and ticket_id not in checked:
                if verify is not None and raw[_HEADER.size - 1:_HEADER.size] == SIGNED:
                    checked.add(ticket_id)
                    why = verify(ticket_id, _HEADER.unpack_from(raw)[0], raw[_HEADER.size:])
                    if why is not None:
                        batch.delete(ticket_id)
                        out.dropped.append((ticket_id, why))
                        raw = None
                if raw is not None:
                    before = _version(raw)
            if change.unverified and verify is not None and (
                    before is not None or ticket_id in shared):
                assert change.payload is not None
                why = verify(ticket_id, change.expires_at, change.payload)
                if why is not None:
                    out.refused.append((i, why))
                    continue
                change = change._replace(payload=unverified.unpack(change.payload).value,
                                         unverified=False)
            if not supersedes(change, before):
                out.stale.append(i)
                continue
            seen[ticket_id] = (change.expires_at, change.payload is None)
            if change.payload is None:
                batch.put(ticket_id, revoked_head + _U64.pack(change.expires_at))
            else:
                kind = JSON if change.is_json else SIGNED if change.unverified else AVRO
                if kind != JSON:
                    batch.delete(ALL_JSON_KEY)
                batch.put(ticket_id, _HEADER.pack(change.expires_at, applied_at, kind)
                          + change.payload)
        for partition, offset in next_offsets.items():
            batch.put(OFFSET_PREFIX + str(partition).encode(), _U64.pack(offset))
        if batch.is_empty():
            return out
        if logged:
            self.make_durable()
            self._db.write(batch)
        else:
            self._since_flush += batch.len()  # (a written batch cannot be asked)
            self._db.write(batch, self._unlogged)
            self._unlogged_pending = True
            if self._since_flush >= self.flush_every:
                self._db.flush(wait=False)  # in the background; the count starts over
                self._since_flush = 0
        return out

    def _next_slice(self, cursor: str, limit: int) -> tuple[list[tuple[bytes, bytes]], bool]:
        """Up to ``limit`` offers from the named cursor on, and whether it reached the end.

        Background passes (sweeping, rendering) walk the store a slice at a
        time; a cursor that reaches the end starts over.
        """
        entries: list[tuple[bytes, bytes]] = []
        it = self._db.iter()
        it.seek(self._cursors[cursor])
        while len(entries) < limit and it.valid():
            entries.append((it.key(), it.value()))
            it.next()
        finished = len(entries) < limit
        self._cursors[cursor] = FIRST_OFFER_KEY if finished else entries[-1][0] + b"\x00"
        return entries, finished

    def sweep_expired(self, now: int, limit: int = 20_000) -> int:
        """Delete expired offers among the next ``limit`` entries; returns how many."""
        batch = WriteBatch(raw_mode=True)
        entries, _ = self._next_slice("sweep", limit)
        for key, value in entries:
            if _U64.unpack_from(value)[0] <= now:
                batch.delete(key)
        removed = batch.len()
        if removed:
            self._db.write(batch)
        return removed

    def render_slice(self, render: Callable[[bytes, StoredOffer], bytes], limit: int = 200
                     ) -> tuple[int, bool, list[tuple[bytes, ValueError]]]:
        """Store the next ``limit`` entries' Avro (checked or not) as the JSON they are
        served as: ``render(ticket_id, entry)`` gives it, or raises ValueError.

        Returns how many were rendered, whether the pass reached the end of
        the store, and the ticket ids (with the error) of records that did
        not render: those are deleted, as a live node would have skipped them.
        """
        batch = WriteBatch(raw_mode=True)
        entries, finished = self._next_slice("render", limit)
        dropped = []
        for key, value in entries:
            if value[_HEADER.size - 1:_HEADER.size] in (AVRO, SIGNED):
                try:
                    body = render(key, _entry(value))
                except ValueError as exc:
                    batch.delete(key)
                    dropped.append((key, exc))
                    continue
                batch.put(key, value[:_HEADER.size - 1] + JSON + body)
        rendered = batch.len() - len(dropped)
        if batch.len():
            self._db.write(batch)
        return rendered, finished, dropped

    @property
    def all_json(self) -> bool:
        """Whether every stored offer is stored as the JSON it is served as."""
        return self._db.get(ALL_JSON_KEY) is not None

    def mark_all_json(self) -> None:
        self._db.put(ALL_JSON_KEY, b"1")

    def estimated_count(self) -> int:
        """RocksDB's estimate of stored offers."""
        return int(self._db.property_int_value("rocksdb.estimate-num-keys") or 0)
