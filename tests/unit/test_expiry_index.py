"""Which offers get a tombstone, from what the offers topic says."""

from __future__ import annotations

from pipeline.expiry import ExpiryIndex


def test_an_expired_offer_is_due_once_its_partition_is_read_to_the_end() -> None:
    index = ExpiryIndex()
    index.assign({0: 3})
    index.apply(0, b"t1", 100)
    assert index.due(200) == []                # partition 0 not read to its end yet
    index.position(0, 3)
    assert index.due(200) == [(b"t1", 100)]
    assert index.due(300) == []                # given once


def test_a_later_record_replaces_or_deletes_the_offer() -> None:
    index = ExpiryIndex()
    index.assign({0: 0})
    index.position(0, 0)
    index.apply(0, b"retried", 100)
    index.apply(0, b"retried", 500)            # a retry re-produced it, expiring later
    index.apply(0, b"revoked", 100)
    index.apply(0, b"revoked", None)           # a tombstone
    assert index.due(200) == []
    assert index.due(600) == [(b"retried", 500)]


def test_revoked_partitions_are_forgotten_and_read_again_when_assigned() -> None:
    index = ExpiryIndex()
    index.assign({0: 1, 1: 1})
    index.apply(0, b"a", 100)
    index.apply(1, b"b", 100)
    index.position(0, 1)
    index.position(1, 1)
    index.revoke([1])
    assert index.due(200) == [(b"a", 100)]
    assert len(index) == 0
    index.assign({1: 1})
    assert index.loading == {1}


def test_records_read_before_the_assignment_is_recorded_count() -> None:
    index = ExpiryIndex()
    index.apply(0, b"early", 100)              # fetched while the listener still seeks
    index.assign({0: 1})
    index.position(0, 1)
    assert index.due(200) == [(b"early", 100)]


def test_a_partition_read_again_after_a_move_gives_each_offer_once() -> None:
    index = ExpiryIndex()
    index.assign({0: 1})
    index.apply(0, b"t", 100)
    index.position(0, 1)
    for _ in range(3):                         # moved away and back three times
        index.revoke([0])
        index.assign({0: 1})
        index.apply(0, b"t", 100)
        index.position(0, 1)
    assert index.due(200) == [(b"t", 100)]
    assert index.due(300) == []
