"""Avro single-object encoding of every Kafka message, on fastavro.

A message is ``C3 01`` + the 8-byte little-endian CRC-64-AVRO fingerprint of
the writer schema's canonical form + the Avro binary body (the Avro
specification's single-object encoding). A reader looks the fingerprint up
among the writer schemas it knows and resolves the data into its own reader
schema, so an older compatible writer still decodes; an unknown fingerprint
is a clear error rather than garbage.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8

Schema = dict[str, Any]


class DecodeError(ValueError):
    """Bytes that are not a message this codec can read."""


class MalformedMessage(DecodeError):
    """Not single-object encoded, or a body that does not match its schema."""


class UnknownSchema(DecodeError):
    """Single-object encoded, but by a writer schema this reader does not know."""


def schema_fingerprint(schema: Schema) -> bytes:
    """The 8-byte CRC-64-AVRO fingerprint, as it appears in the header."""
    hex_digest = fingerprint(to_parsing_canonical_form(parse_schema(schema)), "CRC-64-AVRO")
    return bytes.fromhex(hex_digest)


def load_schema(name: str) -> Schema:
    """A schema shipped in this package, by file stem (``offer``, ``login_event``)."""
    text = resources.files(__package__).joinpath(f"{name}.avsc").read_text()
    return json.loads(text)


class AvroCodec:
    """Encodes with one schema; decodes anything written by a known writer schema."""

    def __init__(self, schema: Schema, older_writers: Iterable[Schema] = ()) -> None:
        self.schema = schema
        self._parsed = parse_schema(schema)
        self._header = MAGIC + schema_fingerprint(schema)
        self._writers: dict[bytes, Any] = {self._header[2:]: self._parsed}
        for writer in older_writers:
            self.register_writer(writer)

    @property
    def name(self) -> str:
        return str(self.schema["name"])

    def register_writer(self, writer_schema: Schema) -> None:
        """Accept messages written by another (compatible) version of the schema."""
        self._writers[schema_fingerprint(writer_schema)] = parse_schema(writer_schema)

    def knows(self, fingerprint: bytes) -> bool:
        """Whether messages written with this schema fingerprint can be read."""
        return fingerprint in self._writers

    def encode(self, record: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self._header)
        schemaless_writer(buf, self._parsed, record)
        return buf.getvalue()

    def decode(self, data: bytes | None) -> dict[str, Any]:
        if data is None:
            raise MalformedMessage(f"{self.name}: empty message (tombstone?)")
        if len(data) < HEADER_LEN or data[:2] != MAGIC:
            raise MalformedMessage(f"{self.name}: not Avro single-object encoded")
        fp = data[2:HEADER_LEN]
        writer = self._writers.get(fp)
        if writer is None:
            raise UnknownSchema(
                f"{self.name}: unknown writer schema fingerprint {fp[::-1].hex()} "
                "(register the writer schema to read it)"
            )
        buf = io.BytesIO(data)
        buf.seek(HEADER_LEN)
        try:
            record = schemaless_reader(buf, writer, self._parsed)
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise MalformedMessage(f"{self.name}: body does not decode: {exc!r}") from exc
        if buf.tell() != len(data):
            raise MalformedMessage(f"{self.name}: {len(data) - buf.tell()} trailing bytes")
        return record  # type: ignore[return-value]


@cache
def login_codec() -> AvroCodec:
    return AvroCodec(load_schema("login_event"))


@cache
def offer_codec() -> AvroCodec:
    return AvroCodec(load_schema("offer"))


def fingerprint_of(data: bytes) -> bytes | None:
    """The writer fingerprint of a single-object encoded message, if it is one."""
    if len(data) >= HEADER_LEN and data[:2] == MAGIC:
        return data[2:HEADER_LEN]
    return None


