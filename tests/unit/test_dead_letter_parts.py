"""The pure parts of ``positioning dlq``: times, offset ranges, selections, the replay
progress kept in a commit, dead-letter headers, and what a dead letter's bytes are now."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ops.dead_letter_selection import (
    BadSelection,
    OffsetRange,
    Selection,
    iso_utc,
    parse_offsets,
    parse_time,
)
from ops.dead_letters import NO_ERROR_TYPE, DeadLetter, LoginView, header_int, replay_group
from ops.replay_progress import (
    MAX_METADATA_BYTES,
    PartitionProgress,
    ProgressFull,
    ProgressUnreadable,
)
from runtime.settings import Settings
from schemas.codec import login_codec
from schemas.events import dead_letter_headers

NOW = 1_746_100_800_000_000  # 2025-05-01T12:00:00Z


@pytest.mark.parametrize(("text", "expected"), [
    ("2025-05-01T12:00:00Z", NOW),
    ("2025-05-01T12:00:00", NOW),  # no zone: UTC
    ("2025-05-01T14:00:00+02:00", NOW),
    ("2025-05-01T12:00:00.25Z", NOW + 250_000),
    ("2025-05-01", NOW - 12 * 3600 * 1_000_000),
    ("90s", NOW - 90_000_000),
    ("10m", NOW - 600_000_000),
    ("2h", NOW - 7_200_000_000),
    ("3d", NOW - 3 * 86_400_000_000),
])
def test_times_are_iso_8601_or_a_time_ago(text: str, expected: int) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "10", "10 m", "-5m", "2h30m", "", "1w"])
def test_other_times_are_refused_with_the_syntax(text: str) -> None:
    with pytest.raises(BadSelection, match="ISO-8601"):
        parse_time(text, NOW)


def test_times_print_as_iso_8601_utc() -> None:
    assert iso_utc(NOW + 123_456) == "2025-05-01T12:00:00.123Z"
    assert iso_utc(2**62) == f"{2**62}µs"  # beyond datetime: still printable


@pytest.mark.parametrize(("text", "expected"), [
    ("2:100-120", OffsetRange(2, 100, 120)),
    ("2:100", OffsetRange(2, 100, 100)),
    ("2:100-", OffsetRange(2, 100, None)),
    ("2", OffsetRange(2, 0, None)),
])
def test_offset_ranges(text: str, expected: OffsetRange) -> None:
    assert parse_offsets(text) == expected
    assert parse_offsets(str(expected)) == expected


@pytest.mark.parametrize("text", ["", "a", "2:", "2:x", "-1:3", "2:5-3", "2:1-2-3", "2:-5"])
def test_bad_offset_ranges_are_refused(text: str) -> None:
    with pytest.raises(BadSelection):
        parse_offsets(text)


def test_a_selection_needs_every_part_to_match() -> None:
    selection = Selection.of(["UnknownSchema"], since_us=100, until_us=200,
                             ranges=[OffsetRange(0, 5, 9), OffsetRange(1)])
    assert selection.matches("UnknownSchema", 150, 0, 5)
    assert selection.matches("UnknownSchema", 200, 1, 1000)
    assert not selection.matches("LoginRejected", 150, 0, 5)
    assert not selection.matches("UnknownSchema", 99, 0, 5)
    assert not selection.matches("UnknownSchema", 201, 0, 5)
    assert not selection.matches("UnknownSchema", 150, 0, 10)
    assert not selection.matches("UnknownSchema", 150, 2, 5)
    assert Selection.of().everything and not selection.everything
    assert Selection.of().matches("anything", 0, 7, 7)


def test_replayed_offsets_move_the_mark_while_they_are_contiguous() -> None:
    progress = PartitionProgress().with_replayed([0, 1, 2, 5, 6, 9])
    assert progress == PartitionProgress(3, ((5, 6), (9, 9)))
    assert [o for o in range(11) if progress.replayed(o)] == [0, 1, 2, 5, 6, 9]
    assert progress.metadata() == "r1:5-6,9"
    assert progress.with_replayed([3, 4]) == PartitionProgress(7, ((9, 9),))
    assert progress.replayed_above_mark == 3


def test_offsets_gone_from_the_log_count_as_handled() -> None:
    assert PartitionProgress().with_replayed([12], log_start=10) == PartitionProgress(10, ((12, 12),))
    assert PartitionProgress().with_replayed([10, 11], log_start=10) == PartitionProgress(12)


def test_progress_round_trips_through_a_commit() -> None:
    progress = PartitionProgress(3, ((5, 6), (9, 9), (20, 40)))
    assert PartitionProgress.from_commit(progress.mark, progress.metadata()) == progress
    assert PartitionProgress.from_commit(-1, "") == PartitionProgress()
    assert PartitionProgress.from_commit(None, None) == PartitionProgress()


@pytest.mark.parametrize("metadata", ["ranges:1-2", "r1:x", "r1:1-y"])
def test_metadata_of_another_kind_is_refused(metadata: str) -> None:
    with pytest.raises(ProgressUnreadable):
        PartitionProgress.from_commit(0, metadata)


def test_progress_too_scattered_for_a_commit_is_refused() -> None:
    scattered = PartitionProgress().with_replayed(range(1, 10_000_000, 2_000_000_001 // 1000))
    assert len(scattered.metadata().encode()) <= MAX_METADATA_BYTES
    too_many = PartitionProgress().with_replayed(range(10**9, 10**9 + 4000, 2))
    with pytest.raises(ProgressFull, match="--offsets"):
        too_many.metadata()


def test_the_replay_group_is_named_after_the_worker() -> None:
    assert replay_group(Settings(worker_id="positioning-worker")) == \
        "positioning-worker.dlq-replay"


def _record(headers: list[tuple[str, bytes | None]], value: bytes | None = b"x") -> object:
    return SimpleNamespace(topic="logins.dlq", partition=1, offset=7, key=b"ada", value=value,
                           timestamp=1_700_000_000_000, headers=headers)


def test_a_dead_letter_reads_the_headers_the_worker_writes() -> None:
    headers = dead_letter_headers("UnknownSchema", "no such fingerprint", "decode", "logins", 2,
                                  41, NOW, carried=[("replayed_from", b"logins.dlq:0:3"),
                                                    ("traceparent", b"00-ab")])
    letter = DeadLetter.from_record(_record(headers))
    assert (letter.error_type, letter.error_message, letter.stage) == \
        ("UnknownSchema", "no such fingerprint", "decode")
    assert letter.source == ("logins", 2, 41)
    assert letter.at_us == NOW
    assert letter.replayed_from == "logins.dlq:0:3"
    assert "traceparent" not in letter.headers
    assert letter.where == "logins.dlq:1:7"
    assert dict(letter.replay_headers(5)) == {"replayed_from": b"logins.dlq:1:7",
                                              "replayed_at": b"5"}


def test_missing_or_malformed_headers_do_not_stop_the_listing() -> None:
    letter = DeadLetter.from_record(_record([("source.offset", b"12a"), ("error.message", None),
                                             ("error.stage", b"\xff\xfe")]))
    assert letter.error_type == NO_ERROR_TYPE
    assert letter.source == (None, None, None)
    assert letter.at_us == 1_700_000_000_000_000  # the record's timestamp
    assert letter.stage == "\ufffd\ufffd"
    assert header_int("12") == 12 and header_int("-3") is None and header_int("\u0663") is None
    assert letter.to_json(replayed=False)["error"]["type"] == NO_ERROR_TYPE


def test_a_dead_letters_bytes_decode_are_refused_or_do_not_decode() -> None:
    fields = {"ticket_id": "t1", "user_id": "ada", "ip": "81.2.69.160", "user_agent": None,
              "login_accepted_at": 10, "expires_at": 20}
    ok = LoginView.of(login_codec().encode(fields))
    assert ok.login is not None and ok.login["ticket_id"] == "t1" and ok.problem is None
    refused = LoginView.of(login_codec().encode({**fields, "expires_at": 5}))
    assert refused.login is not None and refused.problem is not None
    assert refused.problem.startswith("refused: expires_at")
    garbage = LoginView.of(b"\x00garbage")
    assert garbage.login is None and garbage.problem is not None
    assert garbage.problem.startswith("undecodable: ")
