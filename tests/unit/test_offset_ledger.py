"""The worker's offset ledger: what may be committed, whatever order work finishes in."""

from __future__ import annotations

from pipeline.offset_ledger import Admission, OffsetLedger

TP = ("logins", 0)
OTHER = ("worker-user-state-changelog", 0)


def admitted(ledger: OffsetLedger, *offsets: int) -> int:
    generation = 0
    for offset in offsets:
        admission, generation = ledger.admit(TP, offset)
        assert admission is Admission.PROCESS, offset
    return generation


def test_commits_stop_at_the_oldest_unfinished_event_whatever_faust_asks() -> None:
    ledger = OffsetLedger("logins")
    ledger.restart({TP: 100})
    gen = admitted(ledger, 100, 101, 102)
    ledger.finish(TP, 101, gen)            # 101 done before 100: out of order
    # Faust 0.15 would commit 102 here (its gap test is one too lenient).
    assert ledger.fence({TP: 102}) == {TP: 100}
    ledger.finish(TP, 100, gen)
    assert ledger.fence({TP: 101}) == {TP: 102}
    ledger.finish(TP, 102, gen)
    assert ledger.fence({}) == {TP: 103}   # progress is committed even if Faust asks nothing


def test_nothing_is_committed_twice_and_other_topics_pass_through() -> None:
    ledger = OffsetLedger("logins")
    ledger.restart({TP: 5})
    gen = admitted(ledger, 5)
    ledger.finish(TP, 5, gen)
    allowed = ledger.fence({TP: 6, OTHER: 40})
    assert allowed == {TP: 6, OTHER: 40}
    ledger.committed(allowed)
    assert ledger.fence({TP: 6}) == {}


def test_a_jump_in_offsets_is_a_gap_that_must_be_filled_first() -> None:
    ledger = OffsetLedger("logins")
    ledger.restart({TP: 10})
    gen = admitted(ledger, 10)
    ledger.finish(TP, 10, gen)
    assert ledger.admit(TP, 15)[0] is Admission.GAP      # 11..14 never handed over
    assert ledger.expected(TP) == 11
    assert ledger.fence({TP: 16}) == {TP: 11}            # commits stop at the gap
    gen = admitted(ledger, 11, 12, 13, 14, 15)            # the gap, read, then the event
    for offset in range(11, 16):
        ledger.finish(TP, offset, gen)
    assert ledger.fence({}) == {TP: 16}
    assert ledger.gaps == 1


def test_events_handed_over_again_after_a_seek_are_skipped() -> None:
    ledger = OffsetLedger("logins")
    ledger.restart({TP: 0})
    gen = admitted(ledger, 0, 1, 2)
    ledger.restart({TP: 1})                               # Faust seeks back to the commit
    assert ledger.admit(TP, 1)[0] is Admission.SKIP
    assert ledger.admit(TP, 2)[0] is Admission.SKIP
    assert ledger.admit(TP, 3)[0] is Admission.PROCESS
    ledger.finish(TP, 0, gen)
    assert ledger.fence({}) == {TP: 1}                    # 1 and 2 are still in flight


def test_a_partition_that_moved_away_and_back_starts_from_the_new_commit() -> None:
    ledger = OffsetLedger("logins")
    ledger.restart({TP: 0})
    old = admitted(ledger, 0)
    ledger.restart({})                                     # revoked
    ledger.restart({TP: 50})                               # another worker got to 50
    ledger.finish(TP, 0, old)                              # a late finish of the old run
    assert ledger.admit(TP, 50)[0] is Admission.PROCESS
    assert ledger.fence({}) == {TP: 50}


def test_no_committed_offset_starts_at_the_first_event() -> None:
    ledger = OffsetLedger("logins")
    ledger.restart({TP: None})
    assert ledger.fence({TP: 9}) == {}                     # nothing known, nothing committed
    gen = admitted(ledger, 7)
    ledger.finish(TP, 7, gen)
    assert ledger.fence({}) == {TP: 8}


def test_a_commit_that_does_not_come_is_measured() -> None:
    ledger = OffsetLedger("logins")
    ledger.restart({TP: 0})
    now = ledger.last_commit_at
    assert ledger.commit_stalled_s(now + 100) == 0.0       # nothing finished: nothing waits
    gen = admitted(ledger, 0)
    ledger.finish(TP, 0, gen)
    assert ledger.uncommitted()
    assert ledger.commit_stalled_s(now + 100) >= 100       # finished work, no commit since
    ledger.committed(ledger.fence({}))
    assert not ledger.uncommitted() and ledger.commit_stalled_s() < 1


def test_partitions_another_worker_holds_are_forgotten_at_assignment() -> None:
    ledger = OffsetLedger("logins")
    mine, theirs = ("logins", 1), TP
    ledger.restart({TP: 0, mine: 0})
    old = admitted(ledger, 0)
    ledger.keep_only([mine])             # the group gave partition 0 to another worker
    ledger.finish(TP, 0, old)            # a late finish of the login it had in flight
    assert theirs not in ledger.fence({theirs: 1})   # never committed at Faust's offset
    assert ledger.in_flight() == 0 and not ledger.uncommitted()
    ledger.keep_only([])                 # no partitions at all: Faust seeks none
    assert ledger.fence({mine: 5, OTHER: 3}) == {OTHER: 3}


def test_a_partition_kept_across_a_rebalance_keeps_its_place() -> None:
    ledger = OffsetLedger("logins")
    ledger.restart({TP: 0})
    gen = admitted(ledger, 0, 1)
    ledger.finish(TP, 0, gen)
    ledger.keep_only([TP])
    ledger.restart({TP: 1})              # committed during the revocation: 0 was finished
    ledger.finish(TP, 1, gen)            # the login in flight across the rebalance
    assert ledger.admit(TP, 1)[0] is Admission.SKIP
    assert ledger.fence({}) == {TP: 2}


def test_resume_offsets_are_the_last_commit_else_the_start() -> None:
    ledger = OffsetLedger("logins")
    second = ("logins", 1)
    ledger.restart({TP: 7, second: None})
    assert ledger.resume_offsets() == {TP: 7}     # partition 1: nothing known yet
    gen = admitted(ledger, 7, 8)
    ledger.finish(TP, 7, gen)
    ledger.finish(TP, 8, gen)
    assert ledger.resume_offsets() == {TP: 7}     # finished, not yet committed
    ledger.committed(ledger.fence({}))
    assert ledger.resume_offsets() == {TP: 9}
    ledger.admit(second, 3)
    assert ledger.resume_offsets() == {TP: 9, second: 3}
