"""Tickets: unguessable, signed, rotating keys, and three distinct failures."""

from __future__ import annotations

import base64
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from runtime.settings import Settings
from runtime.ticket_secret import SecretFileError
from schemas.tickets import (
    TicketExpired,
    TicketForged,
    TicketMalformed,
    TicketSigner,
    _b64d,
    _b64e,
    parse_keys,
    signer_from_settings,
)

KEY = "k1:" + "a" * 32


def test_issue_then_verify() -> None:
    signer = TicketSigner.from_spec(KEY, ttl_s=900)
    ticket = signer.issue(now_ms=1_000_000)
    assert ticket.expires_at_ms - ticket.issued_at_ms == 900_000
    verified = signer.verify(ticket.token, now_ms=1_000_001)
    assert verified == ticket
    assert len(ticket.ticket_id) == 22  # 128 random bits, base64url


def test_ticket_ids_do_not_repeat() -> None:
    signer = TicketSigner.from_spec(KEY, ttl_s=900)
    assert len({signer.issue().ticket_id for _ in range(2000)}) == 2000


def test_expired_ticket() -> None:
    signer = TicketSigner.from_spec(KEY, ttl_s=10)
    ticket = signer.issue(now_ms=0)
    with pytest.raises(TicketExpired):
        signer.verify(ticket.token, now_ms=10_000)


@pytest.mark.parametrize("position", [5, 30, -3])
def test_tampered_ticket_is_forged(position: int) -> None:
    signer = TicketSigner.from_spec(KEY, ttl_s=900)
    token = signer.issue().token
    chars = list(token)
    chars[position] = "A" if chars[position] != "A" else "B"
    with pytest.raises((TicketForged, TicketMalformed)):
        signer.verify("".join(chars))


def test_ticket_signed_with_another_secret_is_forged() -> None:
    other = TicketSigner.from_spec("k1:" + "b" * 32, ttl_s=900)
    with pytest.raises(TicketForged):
        TicketSigner.from_spec(KEY, ttl_s=900).verify(other.issue().token)


def test_forgery_is_reported_before_expiry() -> None:
    other = TicketSigner.from_spec("k1:" + "b" * 32, ttl_s=1)
    token = other.issue(now_ms=0).token
    with pytest.raises(TicketForged):
        TicketSigner.from_spec(KEY, ttl_s=900).verify(token, now_ms=10**12)


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "k1.!!!.xx", "x" * 500,
                                   "k1.AAAA.BBBB"])
def test_malformed_tickets(token: str) -> None:
    with pytest.raises(TicketMalformed):
        TicketSigner.from_spec(KEY, ttl_s=900).verify(token)


def test_key_rotation_old_tickets_still_verify() -> None:
    old = TicketSigner.from_spec(KEY, ttl_s=900)
    ticket = old.issue()
    rotated = TicketSigner.from_spec("k2:" + "c" * 32 + "," + KEY, ttl_s=900)
    assert rotated.verify(ticket.token).kid == "k1"
    assert rotated.issue().kid == "k2"
    retired = TicketSigner.from_spec("k2:" + "c" * 32, ttl_s=900)
    with pytest.raises(TicketForged):
        retired.verify(ticket.token)


@pytest.mark.parametrize("spec", ["", "nokid", "k1:short", "bad kid:" + "a" * 20,
                                  KEY + "," + KEY])
def test_bad_key_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_keys(spec)


def test_each_local_home_gets_its_own_private_secret_reused_on_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = signer_from_settings(Settings(home=home))
    again = signer_from_settings(Settings(home=home))
    other = signer_from_settings(Settings(home=tmp_path / "other"))
    token = first.issue().token
    assert again.verify(token).token == token
    with pytest.raises(TicketForged):
        other.verify(token)
    path = home / "ticket-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "dev" not in path.read_text()
    # The setting wins over the file.
    assert signer_from_settings(Settings(home=home, ticket_secret=KEY)).verify(
        TicketSigner.from_spec(KEY, 900).issue().token)


def test_a_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ticket-secret"
    path.write_text("local:" + "s" * 43)
    path.chmod(0o644)
    with pytest.raises(SecretFileError):
        signer_from_settings(Settings(home=tmp_path))


def test_secrets_never_reach_reprs() -> None:
    secret = "k1:" + "z" * 40
    assert "zzzz" not in repr(Settings(ticket_secret=secret))
    assert "zzzz" not in repr(TicketSigner.from_spec(secret, 900))


def test_a_valid_signature_on_a_lifetime_beyond_the_ttl_or_a_future_issue_is_refused() -> None:
    signer = TicketSigner.from_spec(KEY, ttl_s=900, clock_skew_s=5)
    now = 1_800_000_000_000
    # A key holder could mint these; an edge must still refuse them.
    long_lived = TicketSigner.from_spec(KEY, ttl_s=2**40).issue(now_ms=now).token
    with pytest.raises(TicketForged):
        signer.verify(long_lived, now_ms=now)
    future = signer.issue(now_ms=now + 60_000).token
    with pytest.raises(TicketForged):
        signer.verify(future, now_ms=now)
    assert signer.verify(signer.issue(now_ms=now + 4_000).token, now_ms=now)  # within the skew


@pytest.mark.parametrize("mutate", [
    lambda t: t.replace(".", "\n.", 1),                  # a newline before a dot
    lambda t: t + "\n",                                   # a trailing newline
    lambda t: t[:-1] + {"A": "B"}.get(t[-1], "A"),        # non-canonical last base64 char
    lambda t: t.replace(".", ".=", 1),                    # padding
    lambda t: "\uff11" + t[1:],                           # a non-ASCII digit or letter
])
def test_anything_beyond_the_exact_alphabet_and_encoding_is_malformed(mutate: Any) -> None:
    signer = TicketSigner.from_spec(KEY, 900)
    token = signer.issue().token
    mutated = mutate(token)
    assert mutated != token
    with pytest.raises((TicketMalformed, TicketForged)) as caught:
        signer.verify(mutated)
    if "\n" in mutated or "=" in mutated or "\uff11" in mutated:
        assert isinstance(caught.value, TicketMalformed)


def test_base64url_helpers_match_the_standard_library() -> None:
    for size in range(0, 40):
        raw = os.urandom(size)
        text = _b64e(raw)
        assert text == base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        assert _b64d(text) == raw


def test_a_ticket_key_rotation_verifies_old_tickets_and_signs_new_ones_when_due(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime import ticket_secret as ts
    from schemas.tickets import signer_from_settings

    settings = Settings(home=tmp_path, ticket_ttl_s=60, ticket_clock_skew_s=5)
    origin, edge = signer_from_settings(settings), signer_from_settings(settings)
    old = origin.issue()
    now = [time.time_ns() // 1000]
    monkeypatch.setattr(ts.time, "time_ns", lambda: now[0] * 1000)
    rotation = ts.rotate_ticket_keys(settings, now[0], publish_s=30)
    for signer in (origin, edge):
        signer._reload.check_every_s = 0  # type: ignore[union-attr]  # look at every call
        signer._reload._next = 0  # type: ignore[union-attr]
    assert origin.issue().kid == old.kid          # published, not signing yet
    assert edge.verify(old.token).ticket_id == old.ticket_id
    now[0] = rotation.sign_from_us
    new = origin.issue()
    assert new.kid == rotation.kid
    assert edge.verify(new.token).kid == rotation.kid  # the edge knew it before it signed
    assert edge.verify(old.token).kid == old.kid       # old tickets verify until they expire
    now[0] = rotation.retire_at_us
    with pytest.raises(TicketForged):
        edge.verify(old.token, now_ms=old.issued_at_ms)  # retired: its key is gone
    assert edge.verify(new.token, now_ms=new.issued_at_ms).kid == rotation.kid


def test_rotating_keys_set_in_the_settings_is_refused_with_the_way(tmp_path: Path) -> None:
    from runtime.ticket_secret import SecretFileError, rotate_ticket_keys

    settings = Settings(home=tmp_path, ticket_secret="k1:" + "s" * 20)
    with pytest.raises(SecretFileError, match="rotate them there"):
        rotate_ticket_keys(settings, 0, 60)


def test_the_local_ticket_file_appears_whole_to_processes_that_start_together(
        tmp_path: Path) -> None:
    """Many processes making the home's ticket file at once: one writes it, every one reads
    the same whole key (none finds it empty)."""
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from runtime.settings import Settings; "
            "from runtime.ticket_secret import ticket_secret; "
            "print(ticket_secret(Settings(home=Path(sys.argv[1]), ticket_secret=None)))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(12)]
    results = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results][:2]
    assert len({out for out, _ in results}) == 1
