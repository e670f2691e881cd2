"""Signed offers' pure parts: Merkle proofs, what a signature covers, the keys and their files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.store import Change, OfferStore
from runtime.offer_keys import (
    OfferKeyError,
    SigningKeyring,
    VerifyKeyring,
    ensure_local_offer_keys,
    read_signing_keys,
    signing_keys_file,
    verify_keys_file,
    write_verify_keys,
)
from runtime.settings import Settings
from schemas.offer_signatures import (
    OfferSigner,
    OfferVerifier,
    SignedFields,
    leaf_hash,
    merkle_tree,
    root_from_proof,
)

KEY = Ed25519PrivateKey.generate()


def _signed(n: int, kid: str = "k1") -> tuple[list[SignedFields], list[dict[str, bytes]]]:
    fields = [SignedFields(f"t{i:021d}".encode(), b"v" * (i % 7), 1000 + i, 10 + i)
              for i in range(n)]
    return fields, [dict(h) for h in OfferSigner("offers", kid, KEY).sign(fields)]


def _verifier(kid: str = "k1") -> OfferVerifier:
    public = KEY.public_key()
    return OfferVerifier("offers", lambda k: public if k == kid else None)


@given(st.integers(min_value=1, max_value=70))
@settings(max_examples=70, deadline=None)
def test_every_leaf_of_every_tree_size_proves_its_way_to_the_root(n: int) -> None:
    leaves = [bytes([i % 256, i // 256]) * 16 for i in range(n)]
    root, paths = merkle_tree(leaves)
    import struct
    for i, path in enumerate(paths):
        proof = struct.pack(">II", i, n) + b"".join(path)
        assert root_from_proof(leaves[i], proof) == root
        if n > 1:  # the same proof with another index or size leads elsewhere
            other = struct.pack(">II", (i + 1) % n, n) + b"".join(path)
            assert root_from_proof(leaves[i], other) != root


def test_each_record_of_a_batch_verifies_alone_and_costs_one_signature_check() -> None:
    fields, headers = _signed(37)
    calls = []
    public = KEY.public_key()
    verifier = OfferVerifier("offers", lambda k: calls.append(k) or public)
    for f, h in zip(fields, headers, strict=True):
        assert verifier.check(f, h["sig.kid"], h["sig.proof"], h["sig"]) is None
    assert calls == ["k1"]  # the root was checked once, then remembered
    # After compaction only a few remain: each still verifies with a fresh verifier.
    fresh = _verifier()
    for i in (3, 36):
        assert fresh.check(fields[i], headers[i]["sig.kid"], headers[i]["sig.proof"],
                           headers[i]["sig"]) is None


@pytest.mark.parametrize("change", ["key", "value", "tombstone", "expires_at", "accepted_at",
                                    "topic", "kid", "signature", "proof", "unsigned"])
def test_whatever_is_changed_after_signing_does_not_verify(change: str) -> None:
    fields, headers = _signed(4)
    f, h = fields[1], dict(headers[1])
    verifier = _verifier()
    if change == "key":
        f = f._replace(key=b"t" * 22)
    elif change == "value":
        f = f._replace(value=b"w" + (f.value or b"")[1:])
    elif change == "tombstone":
        f = f._replace(value=None)
    elif change == "expires_at":
        f = f._replace(expires_at=f.expires_at + 1)
    elif change == "accepted_at":
        f = f._replace(accepted_at=0)
    elif change == "topic":
        verifier = OfferVerifier("offers-b", lambda k: KEY.public_key())
    elif change == "kid":
        verifier = OfferVerifier("offers", lambda k: KEY.public_key())
        h["sig.kid"] = b"k2"
    elif change == "signature":
        h["sig"] = bytes(64)
    elif change == "proof":
        h["sig.proof"] = h["sig.proof"][:-1]
    elif change == "unsigned":
        del h["sig"]
    assert verifier.check(f, h.get("sig.kid"), h.get("sig.proof"), h.get("sig")) is not None


def test_a_key_the_edge_does_not_trust_is_refused_by_name() -> None:
    fields, headers = _signed(1, kid="rogue")
    why = _verifier("k1").check(fields[0], headers[0]["sig.kid"], headers[0]["sig.proof"],
                                headers[0]["sig"])
    assert why is not None and "'rogue'" in why


def test_the_leaf_covers_each_field_separately() -> None:
    # Length prefixes: moving bytes from the key into the value changes the leaf.
    a = leaf_hash(b"offers", b"k", SignedFields(b"ab", b"c", 1, 2))
    b = leaf_hash(b"offers", b"k", SignedFields(b"a", b"bc", 1, 2))
    assert a != b
    assert leaf_hash(b"offers", b"k", SignedFields(b"a", b"", 1)) != leaf_hash(
        b"offers", b"k", SignedFields(b"a", None, 1))


def test_newer_wins_whatever_the_order(tmp_path: Path) -> None:
    store = OfferStore(tmp_path)
    t = b"t" * 22
    assert store.apply([Change(t, b"old", 100, True)], {}, 1).stale == []
    assert store.apply([Change(t, b"new", 200, True)], {}, 2).stale == []          # a retry: later
    assert store.apply([Change(t, b"old", 100, True)], {}, 3).stale == [0]         # replayed: refused
    assert store.get(t).payload == b"new"  # type: ignore[union-attr]
    assert store.apply([Change(t, None, 100)], {}, 4).stale == [0]  # ends an older offer: refused
    assert store.apply([Change(t, b"new", 200, True), Change(t, None, 200),
                        Change(t, b"new", 200, True)], {}, 5).stale == [2]  # same batch, in order
    assert store.get(t).revoked  # type: ignore[union-attr]
    assert store.apply([Change(t, None, 0)], {}, 6).stale == []  # an unversioned tombstone applies


def test_local_keys_are_made_once_private_and_public_apart(tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    ensure_local_offer_keys(s)
    signing, verify = signing_keys_file(s), verify_keys_file(s)
    assert stat.S_IMODE(signing.stat().st_mode) == 0o600
    assert "seed" not in verify.read_text()
    first = read_signing_keys(signing)
    ensure_local_offer_keys(s)
    assert read_signing_keys(signing) == first
    assert repr(first[0]).count(first[0].seed.hex()) == 0
    os.chmod(signing, 0o644)
    with pytest.raises(OfferKeyError, match="readable by others"):
        SigningKeyring(signing).current(10**18)


def test_a_retired_key_is_no_longer_trusted_and_a_bad_file_keeps_the_last_good_keys(
        tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    ensure_local_offer_keys(s)
    path = verify_keys_file(s)
    keyring = VerifyKeyring(path, check_every_s=0)
    (kid,) = keyring.trusted
    (key,) = json.loads(path.read_text())["keys"]
    from runtime.offer_keys import read_verify_keys
    (vk,) = read_verify_keys(path)
    write_verify_keys(path, [vk.__class__(vk.kid, vk.public, retire_at_us=5)])
    assert keyring.refresh(now_us=10) is True and keyring.get(kid) is None
    path.write_text("not json")
    keyring.refresh(now_us=10)
    assert keyring.problem and "not JSON" in keyring.problem
    assert key["kid"] == kid


def test_a_rotation_publishes_first_switches_later_and_retires_after_the_longest_ticket(
        tmp_path: Path) -> None:
    from runtime.offer_keys import read_verify_keys, rotate_offer_keys

    s = Settings(home=tmp_path, ticket_ttl_s=900, ticket_clock_skew_s=5)
    ensure_local_offer_keys(s)
    (old,) = read_signing_keys(signing_keys_file(s))
    now = 10**16
    rotation = rotate_offer_keys(s, now, publish_s=60)
    assert rotation.sign_from_us == now + 60_000_000
    assert rotation.retire_at_us == rotation.sign_from_us + 905_000_000
    keyring = SigningKeyring(signing_keys_file(s), check_every_s=0)
    assert keyring.current(now).kid == old.kid                      # not yet
    assert keyring.current(rotation.sign_from_us).kid == rotation.kid
    verify = VerifyKeyring(verify_keys_file(s), check_every_s=0)
    assert verify.refresh(now) is False and verify.trusted == {old.kid, rotation.kid}
    assert verify.refresh(rotation.retire_at_us) and verify.trusted == {rotation.kid}
    # The next rotation, after the old key retired, drops it from both files.
    later = rotate_offer_keys(s, rotation.retire_at_us + 1)
    assert later.retired == (old.kid,)
    assert old.kid not in {k.kid for k in read_verify_keys(verify_keys_file(s))}
    assert old.kid not in {k.kid for k in read_signing_keys(signing_keys_file(s))}


def test_what_is_stored_unchecked_never_takes_the_place_of_what_checks(tmp_path: Path) -> None:
    """Catching up, offers are stored unchecked (kind S) unless they meet another record of
    their ticket: then both are checked, so a forged record can neither replace a real one
    nor, stored first, keep a real one out by claiming a higher version."""
    from edge import unverified

    def s(value: bytes, expires_at: int, ticket: bytes = b"t" * 22) -> Change:
        return Change(ticket, unverified.pack(b"k", b"p", b"s", 0, value), expires_at,
                      unverified=True)

    def verify(ticket_id: bytes, expires_at: int, payload: bytes) -> str | None:
        return None if unverified.unpack(payload).value.startswith(b"good") else "forged"

    store = OfferStore(tmp_path)
    t = b"t" * 22
    # Alone, unchecked: stored as S, checked when read.
    assert store.apply([s(b"bad", 10**9)], {}, 1, verify=verify) == ([], [], [])
    assert store.get(t).unverified  # type: ignore[union-attr]
    # The real one arrives, older by its version: the stored S is checked, fails, goes.
    done = store.apply([s(b"good-1", 100)], {}, 2, verify=verify)
    assert done.dropped == [(t, "forged")] and done.refused == [] and done.stale == []
    def value(ticket: bytes) -> bytes:
        entry = store.get(ticket)
        assert entry is not None
        return unverified.unpack(entry.payload).value if entry.unverified else entry.payload

    assert value(t) == b"good-1"
    # A forged one after it, newer by its claim: checked at once, refused; the real stays.
    assert store.apply([s(b"bad", 10**9)], {}, 3, verify=verify).refused == [(0, "forged")]
    assert value(t) == b"good-1"
    # Two records of one new ticket in one batch: both checked, the forged one refused.
    u = b"u" * 22
    done = store.apply([s(b"good-2", 100, u), s(b"bad", 10**9, u)], {}, 4, verify=verify)
    assert done.refused == [(1, "forged")]
    assert value(u) == b"good-2"
