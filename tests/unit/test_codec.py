"""Avro single-object encoding: round trip, evolution, and clear errors."""

from __future__ import annotations

import copy

import pytest

from schemas.codec import (
    AvroCodec,
    MalformedMessage,
    UnknownSchema,
    fingerprint_of,
    load_schema,
    login_codec,
    schema_fingerprint,
)

LOGIN = {"ticket_id": "t1", "user_id": "alice", "ip": "81.2.69.160", "user_agent": None,
         "login_accepted_at": 1_700_000_000_000_000, "expires_at": 1_700_000_900_000_000}


def test_round_trip_and_header_names_the_schema() -> None:
    codec = login_codec()
    data = codec.encode(LOGIN)
    assert data[:2] == b"\xc3\x01"
    assert fingerprint_of(data) == schema_fingerprint(load_schema("login_event"))
    assert codec.decode(data) == LOGIN


def test_fingerprint_matches_the_avro_specification_vector() -> None:
    # The spec's CRC-64-AVRO of the schema "int" is 0x7275d51a3f395c8f, stored little-endian.
    assert schema_fingerprint("int").hex() == "8f5c393f1ad57572"  # type: ignore[arg-type]


def test_reader_decodes_messages_of_an_older_compatible_writer() -> None:
    old = copy.deepcopy(load_schema("login_event"))
    old["fields"] = [f for f in old["fields"] if f["name"] != "user_agent"]
    old_writer = AvroCodec(old)
    data = old_writer.encode({k: v for k, v in LOGIN.items() if k != "user_agent"})
    reader = AvroCodec(load_schema("login_event"), older_writers=[old])
    assert reader.decode(data) == LOGIN  # the new field takes its default


def test_unknown_fingerprint_is_a_clear_error() -> None:
    old = copy.deepcopy(load_schema("login_event"))
    old["fields"] = [f for f in old["fields"] if f["name"] != "user_agent"]
    data = AvroCodec(old).encode({k: v for k, v in LOGIN.items() if k != "user_agent"})
    with pytest.raises(UnknownSchema, match="unknown writer schema fingerprint"):
        login_codec().decode(data)


@pytest.mark.parametrize("data", [b"", b"garbage", b"\xc3\x01" + b"\x00" * 3, None])
def test_garbage_is_malformed(data: bytes | None) -> None:
    with pytest.raises(MalformedMessage):
        login_codec().decode(data)


def test_truncated_body_is_malformed() -> None:
    data = login_codec().encode(LOGIN)
    with pytest.raises(MalformedMessage):
        login_codec().decode(data[:-3])
