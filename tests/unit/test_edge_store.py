"""The edge store: atomic offsets, tombstones, expiry sweep."""

from __future__ import annotations

from pathlib import Path

from edge.store import Change, OfferStore, StoredOffer
from tests.edge_node import block_cache_bytes, stored_entries, stored_ticket_ids


def test_records_and_offsets_are_applied_together(tmp_path: Path) -> None:
    store = OfferStore(tmp_path)
    store.apply([Change(b"t1", b"offer-1", expires_at=100), Change(b"t2", b"offer-2", 100)],
                {0: 5, 1: 9}, applied_at=42)
    assert store.offsets() == {0: 5, 1: 9}
    stored = store.get(b"t1")
    assert stored is not None and (stored.payload, stored.expires_at, stored.applied_at) == \
        (b"offer-1", 100, 42)
    store.close()
    reopened = OfferStore(tmp_path)
    assert reopened.offsets() == {0: 5, 1: 9}
    assert stored_entries(reopened) == {b"t1": b"Aoffer-1", b"t2": b"Aoffer-2"}
    reopened.close()


def test_a_reopened_store_keeps_its_tuning(tmp_path: Path) -> None:
    # rocksdict reopens an existing store with the options saved in it (and an
    # 8 MiB block cache) unless the column family's options are passed too.
    store = OfferStore(tmp_path, block_cache_mb=64)
    assert block_cache_bytes(store) == 64 * 1024 * 1024
    store.apply([Change(b"t1", b"offer", 100)], {0: 1}, 1)
    store.close()
    for size in (64, 32):
        reopened = OfferStore(tmp_path, block_cache_mb=size)
        assert block_cache_bytes(reopened) == size * 1024 * 1024
        assert reopened.get(b"t1") is not None
        reopened.close()


def test_skipped_records_still_advance_the_offset(tmp_path: Path) -> None:
    store = OfferStore(tmp_path)
    store.apply([], {3: 17}, applied_at=1)
    assert store.offsets() == {3: 17}
    store.close()


def test_a_tombstone_is_remembered_as_a_revocation_until_no_ticket_can_need_it(
        tmp_path: Path) -> None:
    store = OfferStore(tmp_path, remember_revoked_us=1_000)
    store.apply([Change(b"t1", b"offer", 100)], {0: 1}, 1)
    store.apply([Change(b"t1", None)], {0: 2}, 2)
    revoked = store.get(b"t1")
    assert revoked is not None and revoked.revoked and revoked.payload == b""
    assert revoked.expires_at == 2 + 1_000
    assert store.offsets() == {0: 2}
    assert store.sweep_expired(now=1_001) == 0
    assert store.sweep_expired(now=1_002) == 1
    assert store.get(b"t1") is None
    store.close()


def test_sweep_removes_only_what_expired(tmp_path: Path) -> None:
    store = OfferStore(tmp_path)
    store.apply([Change(b"old", b"a", 100), Change(b"new", b"b", 10_000)], {0: 2}, 1)
    assert store.sweep_expired(now=5_000) == 1
    assert store.get(b"old") is None and store.get(b"new") is not None
    assert store.sweep_expired(now=5_000) == 0
    assert stored_ticket_ids(store) == [b"new"]
    store.close()


def test_a_renewed_offer_survives_the_sweep_of_its_old_expiry(tmp_path: Path) -> None:
    store = OfferStore(tmp_path)
    store.apply([Change(b"t", b"first", 100)], {0: 1}, 1)
    store.apply([Change(b"t", b"second", 10_000)], {0: 2}, 2)
    assert store.sweep_expired(now=5_000) == 0
    assert store.get(b"t").payload == b"second"  # type: ignore[union-attr]
    store.close()


def test_live_offers_are_stored_as_json_and_avro_ones_can_be_replaced(tmp_path: Path) -> None:
    store = OfferStore(tmp_path)
    store.apply([Change(b"live", b'{"a":1}', 100, is_json=True), Change(b"boot", b"avro", 100)],
                {0: 2}, applied_at=7)
    live, boot = store.get(b"live"), store.get(b"boot")
    assert live is not None and live.is_json and live.payload == b'{"a":1}'
    assert boot is not None and not boot.is_json
    store.replace_with_json(b"boot", boot, b'{"b":2}')
    again = store.get(b"boot")
    assert again is not None and again.is_json and again.payload == b'{"b":2}'
    assert (again.expires_at, again.applied_at) == (100, 7)
    store.close()


def test_background_render_turns_avro_into_served_json(tmp_path: Path) -> None:
    store = OfferStore(tmp_path)
    store.apply([Change(f"t{i:03d}".encode(), b"avro-%d" % i, 100) for i in range(50)]
                + [Change(b"bad", b"broken", 100)], {0: 51}, applied_at=1)
    assert not store.all_json

    def render(ticket_id: bytes, stored: StoredOffer) -> bytes:
        if stored.payload == b"broken":
            raise ValueError("does not decode")
        return b'{"p":"' + stored.payload + b'"}'

    total, finished, dropped = 0, False, []
    while not finished:
        rendered, finished, bad = store.render_slice(render, limit=7)
        total += rendered
        dropped += [key for key, _ in bad]
    assert total == 50
    live = store.get(b"t007")
    assert live is not None and live.is_json and live.payload == b'{"p":"avro-7"}'
    # What does not render is deleted, as a live node would have skipped its record.
    assert dropped == [b"bad"] and store.get(b"bad") is None
    store.mark_all_json()
    assert store.all_json
    store.apply([Change(b"late", b"avro", 100)], {0: 52}, applied_at=2)
    assert not store.all_json  # a new Avro entry clears the marker
    store.close()


def _crash_after(tmp_path: Path, writes: str) -> OfferStore:
    """Run ``writes`` (with ``store`` open) in a process that then dies like SIGKILL; reopen."""
    import subprocess
    import sys

    program = "\n".join([
        "import os, sys", "from pathlib import Path", "from edge.store import Change, OfferStore",
        "store = OfferStore(Path(sys.argv[1]), flush_every=2)", writes,
        "os._exit(0)  # no close, no flush"])
    subprocess.run([sys.executable, "-c", program, str(tmp_path)], check=True, timeout=60)
    return OfferStore(tmp_path)


def test_a_crash_after_unlogged_writes_keeps_data_and_offsets_in_step(tmp_path: Path) -> None:
    """What a crash loses of an unlogged catch-up, it loses with its offsets."""
    store = _crash_after(tmp_path, "\n".join([
        "store.apply([Change(b'a1', b'x', 100), Change(b'a2', b'x', 100)], {0: 2}, 1, logged=False)",
        "store.make_durable()",
        "store.apply([Change(b'b1', b'y', 100)], {0: 3}, 2, logged=False)"]))
    try:
        offsets, keys = store.offsets(), set(stored_entries(store))
        assert (offsets, keys) in [({0: 2}, {b"a1", b"a2"}), ({0: 3}, {b"a1", b"a2", b"b1"})]
    finally:
        store.close()


def test_a_logged_write_after_unlogged_ones_makes_them_durable_first(tmp_path: Path) -> None:
    """Going live must not leave a gap: the catch-up writes survive the crash too."""
    store = _crash_after(tmp_path, "\n".join([
        "store.flush_every = 1_000",
        "store.apply([Change(b'boot', b'avro', 100)], {0: 1}, 1, logged=False)",
        "store.apply([Change(b'live', b'{}', 100, is_json=True)], {0: 2}, 2)"]))
    try:
        assert store.offsets() == {0: 2}
        assert set(stored_entries(store)) == {b"boot", b"live"}
    finally:
        store.close()


def test_a_store_marked_for_a_rebuild_or_damaged_starts_over(tmp_path: Path) -> None:
    from edge.store import mark_for_rebuild, open_or_rebuild

    store, moved = open_or_rebuild(tmp_path)
    assert moved is None
    store.apply([Change(b"t1", b"offer", 100)], {0: 1}, 1)
    store.close()
    mark_for_rebuild(tmp_path)
    store, moved = open_or_rebuild(tmp_path)
    assert moved is not None and moved.exists() and store.offsets() == {}
    assert store.get(b"t1") is None
    store.close()
    assert open_or_rebuild(tmp_path)[1] is None  # the mark is gone with the rebuild


def test_a_lookup_on_a_store_that_cannot_be_read_says_503_and_never_guesses() -> None:
    from prometheus_client import CollectorRegistry, Histogram

    from edge.lookup import Answer, Lookups
    from edge.render import Renderer
    from edge.store import StoreDamaged
    from schemas.tickets import TicketSigner

    signer = TicketSigner.from_spec("k:" + "s" * 32, 900)

    class Broken:
        def get(self, ticket_id: bytes) -> None:
            raise StoreDamaged("Corruption: block checksum mismatch")

    seen: list[Exception] = []

    def damaged(exc: Exception) -> Answer:
        seen.append(exc)
        return Answer(503, b"{}", (("retry-after", "1"),))

    hist = Histogram("h", "h", ["region", "outcome"], registry=CollectorRegistry())
    lookups = Lookups(signer, Broken(), hist, "eu", Renderer(None),  # type: ignore[arg-type]
                      on_damaged=damaged)
    assert lookups.now(signer.issue().token).status == 503
    assert len(seen) == 1
