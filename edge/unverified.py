"""An offer stored before its signature was checked: the signature headers and the Avro value.

A node catching up stores each signed offer as it came, without checking it
(edge/store.py, kind ``S``), and checks it the first time it is read or
rendered (edge/render.py), so a bootstrap does not pay a signature check per
record. The layout: a header (key-id, proof and signature lengths, u16 each;
the login time, u64 µs), then the key id, the proof, the signature and the
value.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

_HEAD = struct.Struct(">HHHQ")


class Unverified(NamedTuple):
    kid: bytes
    proof: bytes
    signature: bytes
    accepted_at: int
    value: bytes


def pack(kid: bytes, proof: bytes, signature: bytes, accepted_at: int, value: bytes) -> bytes:
    """Raises struct.error if a part is longer than 65,535 bytes."""
    return b"".join((_HEAD.pack(len(kid), len(proof), len(signature), accepted_at),
                     kid, proof, signature, value))


def unpack(payload: bytes) -> Unverified:
    """Raises ValueError: not such a payload."""
    try:
        kid_len, proof_len, sig_len, accepted_at = _HEAD.unpack_from(payload)
    except struct.error as exc:
        raise ValueError(f"not a stored unverified offer: {exc}") from None
    at = _HEAD.size
    kid = payload[at:at + kid_len]
    at += kid_len
    proof = payload[at:at + proof_len]
    at += proof_len
    signature = payload[at:at + sig_len]
    at += sig_len
    if at > len(payload):
        raise ValueError("not a stored unverified offer: truncated")
    return Unverified(kid, proof, signature, accepted_at, payload[at:])
