"""Offers signed by the worker and checked by every edge: Ed25519 over a Merkle root per batch.

The worker signs each batch of ``offers`` records it produces once: every
record is a leaf of a Merkle tree (RFC 9162's, as Certificate Transparency
logs build it), the root is signed with the worker's Ed25519 key, and each
record carries the signature, the key id and its own inclusion proof in
headers. So a record still verifies on its own after compaction removed the
rest of its batch, and an edge that has checked a root once checks the other
records of that batch with a few hashes (``OfferVerifier`` remembers the
roots it verified). Edges hold public keys only: none of them can sign.

A leaf covers the topic, the key (the ticket id), whether the record is a
tombstone, the value's bytes (their first ten are the Avro magic and the
schema fingerprint, so the schema is covered too), the expiry and login
times the edges read from headers, and the key id. So a record cannot be
moved to another ticket or topic, have its expiry changed, or pass as
signed by another key. Which of two valid records for a ticket is newer is
decided by the store (edge/store.py): the expiry, which only grows for a
ticket.

Headers (``sig.kid`` ASCII, ``sig.proof`` = u32 leaf index, u32 tree size,
then 32-byte sibling hashes from the leaf up; ``sig`` = 64 bytes):
``SIG_KID_HEADER``, ``SIG_PROOF_HEADER``, ``SIG_HEADER``.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIG_KID_HEADER = "sig.kid"
SIG_PROOF_HEADER = "sig.proof"
SIG_HEADER = "sig"
SIGNATURE_HEADERS = frozenset((SIG_KID_HEADER, SIG_PROOF_HEADER, SIG_HEADER))

ROOT_DOMAIN = b"content-positioning offers batch v1\x00"
_LEAF_PREFIX = b"\x00content-positioning offer v1\x00"
_NODE_PREFIX = b"\x01"
_LENGTHS = struct.Struct(">HHHIQQ")  # topic, kid, key, value (TOMBSTONE_LEN: none), two times
TOMBSTONE_LEN = 0xFFFF_FFFF
_PROOF_HEAD = struct.Struct(">II")
HASH_LEN = 32
SIGNATURE_LEN = 64
MAX_PROOF_DEPTH = 32
_sha256 = hashlib.sha256


class SignedFields(NamedTuple):
    """What a signature covers of one record, besides the topic and the key id."""

    key: bytes
    value: bytes | None        # None: a tombstone
    expires_at: int            # µs: the offer's expiry; a tombstone's: the expiry it ends
    accepted_at: int = 0       # µs: the login's acceptance (0 for a tombstone)


def leaf_hash(topic: bytes, kid: bytes, fields: SignedFields) -> bytes:
    """The Merkle leaf of one record (32 bytes); every field length-prefixed."""
    value = fields.value
    head = _LENGTHS.pack(len(topic), len(kid), len(fields.key),
                         TOMBSTONE_LEN if value is None else len(value),
                         fields.expires_at, fields.accepted_at)
    return _sha256(b"".join((_LEAF_PREFIX, head, topic, kid, fields.key, value or b""))).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return _sha256(_NODE_PREFIX + left + right).digest()


def merkle_tree(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The root of ``leaves`` (at least one) and each leaf's inclusion path, leaf up
    (RFC 9162, 2.1.1 and 2.1.3.1)."""
    paths: list[list[bytes]] = [[] for _ in leaves]

    def build(lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 1:
            return leaves[lo]
        k = 1 << ((n - 1).bit_length() - 1)  # the largest power of two below n
        left, right = build(lo, lo + k), build(lo + k, hi)
        for i in range(lo, lo + k):
            paths[i].append(right)
        for i in range(lo + k, hi):
            paths[i].append(left)
        return _node(left, right)

    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    return build(0, len(leaves)), paths


def root_from_proof(leaf: bytes, proof: bytes) -> bytes | None:
    """The root that ``proof`` (a ``sig.proof`` header) leads ``leaf`` to; None if the proof
    is malformed (RFC 9162, 2.1.3.2)."""
    climbed = _climb(leaf, proof, frozenset())
    return None if climbed is None else climbed[0]


def _climb(leaf: bytes, proof: bytes, known: set[bytes] | frozenset[bytes]
           ) -> tuple[bytes, list[bytes], bool] | None:
    """Walk ``proof`` up from ``leaf`` (RFC 9162, 2.1.3.2), stopping early at a node in
    ``known``. Returns the last node reached, every hash met on the way (siblings and
    computed nodes), and whether it stopped at a known node; None if malformed."""
    if len(proof) < _PROOF_HEAD.size or (len(proof) - _PROOF_HEAD.size) % HASH_LEN:
        return None
    index, size = _PROOF_HEAD.unpack_from(proof)
    depth = (len(proof) - _PROOF_HEAD.size) // HASH_LEN
    if index >= size or depth > MAX_PROOF_DEPTH:
        return None
    fn, sn, r = index, size - 1, leaf
    met = [leaf]
    at = _PROOF_HEAD.size
    for _ in range(depth):
        if sn == 0:
            return None
        p = proof[at:at + HASH_LEN]
        at += HASH_LEN
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        met += (p, r)
        if r in known:
            return r, met, True
        fn >>= 1
        sn >>= 1
    return (r, met, False) if sn == 0 else None


def root_message(kid: bytes, root: bytes) -> bytes:
    """What the Ed25519 signature signs: a domain, the key id and the root."""
    return ROOT_DOMAIN + kid + b"\x00" + root


class OfferSigner:
    """Signs batches of records of one topic with one key: ``sign`` gives each its headers.

    Raises nothing of its own; ``cryptography`` signs (about 30 µs a batch
    here) and ``hashlib`` hashes (about 1 µs a record and 0.4 µs a level).
    """

    def __init__(self, topic: str, kid: str, key: Ed25519PrivateKey) -> None:
        self.topic = topic.encode()
        self.kid = kid
        self._kid = kid.encode("ascii")
        self._key = key

    def sign(self, records: Sequence[SignedFields], groups: Sequence[int] | None = None
             ) -> list[list[tuple[str, bytes]]]:
        """The signature headers of each record, in order (none for no records).

        ``groups`` (one number per record, e.g. its partition) places records of a
        group next to each other in the tree, so an edge reading one partition
        meets a batch's records as neighbouring leaves: the second of two
        neighbours is one of the first one's proof hashes, verified already.
        Any grouping verifies; it only makes checking cheaper.
        """
        if not records:
            return []
        topic, kid = self.topic, self._kid
        order = (list(range(len(records))) if groups is None
                 else sorted(range(len(records)), key=groups.__getitem__))
        leaves = [leaf_hash(topic, kid, records[i]) for i in order]
        root, paths = merkle_tree(leaves)
        signature = self._key.sign(root_message(kid, root))
        size = len(leaves)
        out: list[list[tuple[str, bytes]]] = [[] for _ in records]
        for position, i in enumerate(order):
            out[i] = [(SIG_KID_HEADER, kid),
                      (SIG_PROOF_HEADER, _PROOF_HEAD.pack(position, size) + b"".join(paths[position])),
                      (SIG_HEADER, signature)]
        return out


def refusal_reason(why: str) -> str:
    """The metric label of one of ``OfferVerifier.check``'s answers: ``unsigned``,
    ``untrusted_key``, ``forged`` or ``malformed_signature``."""
    if why == "unsigned":
        return "unsigned"
    if "does not trust" in why:
        return "untrusted_key"
    if "does not verify" in why:
        return "forged"
    return "malformed_signature"


class OfferVerifier:
    """Checks records of one topic against the public keys ``keys(kid)`` gives (None: unknown).

    ``check`` returns None for a record signed by a trusted key, else why not.
    Every hash of a tree whose root verified is remembered as authentic (up
    to ``remember_hashes``, then the memory starts over): the siblings in the
    proof and the nodes computed from them; the roots themselves are kept
    apart, up to as many again, so a tree met again after the hashes were
    dropped (its records in another partition, read later) costs its proof's
    hashes and no signature. So a batch costs one Ed25519
    verification (about 80 µs here) per edge, and the next record of the same
    batch, whose leaf is usually among those hashes already, one leaf hash.
    A leaf and a node can never be taken for each other (RFC 9162's
    prefixes), so a remembered hash proves nothing but its own tree.
    """

    def __init__(self, topic: str, keys: Callable[[str], Ed25519PublicKey | None],
                 remember_hashes: int = 200_000) -> None:
        self.topic = topic.encode()
        self.keys = keys
        self.remember_hashes = remember_hashes
        self._verified: set[bytes] = set()
        self._roots: set[bytes] = set()  # roots whose signature verified, kept longer

    def check(self, fields: SignedFields, kid: bytes | None, proof: bytes | None,
              signature: bytes | None) -> str | None:
        """None if the record of ``fields`` and these headers verifies, else why not."""
        return self.check_record(fields.key, fields.value, fields.expires_at,
                                 fields.accepted_at, kid, proof, signature)

    def check_record(self, key: bytes, value: bytes | None, expires_at: int, accepted_at: int,
                     kid: bytes | None, proof: bytes | None, signature: bytes | None
                     ) -> str | None:
        """``check`` with the fields given one by one: an edge's catch-up calls it once per
        record, and most records end at the first test of a remembered hash."""
        if kid is None or proof is None or signature is None:
            return "unsigned"
        topic = self.topic
        # ``leaf_hash``, inlined: this runs once per record an edge applies.
        leaf = _sha256(b"".join((
            _LEAF_PREFIX,
            _LENGTHS.pack(len(topic), len(kid), len(key),
                          TOMBSTONE_LEN if value is None else len(value), expires_at, accepted_at),
            topic, kid, key, value or b""))).digest()
        verified = self._verified
        if leaf in verified:
            return None
        # Walk the proof up (RFC 9162, 2.1.3.2) until a remembered node: usually one or
        # two levels, since the records of a batch in one partition are neighbours.
        end = len(proof)
        if end < _PROOF_HEAD.size or (end - _PROOF_HEAD.size) % HASH_LEN or (
                end - _PROOF_HEAD.size > MAX_PROOF_DEPTH * HASH_LEN):
            return "its inclusion proof is malformed"
        fn, sn = _PROOF_HEAD.unpack_from(proof)
        if fn >= sn:
            return "its inclusion proof is malformed"
        sn -= 1
        r = leaf
        met = [leaf]
        at = _PROOF_HEAD.size
        while at < end:
            if sn == 0:
                return "its inclusion proof is malformed"
            p = proof[at:at + HASH_LEN]
            at += HASH_LEN
            if fn & 1 or fn == sn:
                r = _sha256(_NODE_PREFIX + p + r).digest()
                if not fn & 1:
                    while not fn & 1 and fn != 0:
                        fn >>= 1
                        sn >>= 1
            else:
                r = _sha256(_NODE_PREFIX + r + p).digest()
            met.append(p)
            met.append(r)
            if r in verified:
                self._remember(met)
                return None
            fn >>= 1
            sn >>= 1
        if sn != 0:
            return "its inclusion proof is malformed"
        return self._check_root(r, met, kid, signature)

    def _check_root(self, root: bytes, met: list[bytes], kid: bytes, signature: bytes
                    ) -> str | None:
        """A proof reached ``root``, not remembered: check the signature over it."""
        if root in self._roots:
            self._remember(met)
            return None
        try:
            kid_text = kid.decode("ascii")
        except UnicodeDecodeError:
            return "its key id is not ASCII"
        public = self.keys(kid_text)
        if public is None:
            return f"signed with key {kid_text!r}, which this edge does not trust"
        if len(signature) != SIGNATURE_LEN:
            return "its signature is not 64 bytes"
        try:
            public.verify(signature, root_message(kid, root))
        except InvalidSignature:
            return "its signature does not verify (forged, or altered after signing)"
        if len(self._roots) >= self.remember_hashes:
            self._roots.clear()
        self._roots.add(root)
        self._remember(met)
        return None

    def _remember(self, hashes: list[bytes]) -> None:
        verified = self._verified
        if len(verified) + len(hashes) > self.remember_hashes:
            verified.clear()  # the roots stay: a tree met again costs hashes, not a signature
        verified.update(hashes)

    def forget(self) -> None:
        """Drop every remembered hash and root (a key was retired: check them again)."""
        self._verified.clear()
        self._roots.clear()
