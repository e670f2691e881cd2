"""Where the ticket keys come from: the setting, else a file per local home that can rotate.

``POSITIONING_TICKET_SECRET`` (``kid:secret[,kid:secret...]``, the first
signs) wins, and changes with a restart. Without it, every component of one
local home shares ``<home>/ticket-secret`` (mode 0600): made the first time
as one key of 256 random bits, re-read when it changes, so
``positioning keys rotate`` changes the key with no restart. The file holds
either that first spec line or, once rotated, JSON:
``{"keys": [{"kid", "secret", "sign_from_us", "retire_at_us"}]}``. The newest
key whose ``sign_from_us`` has come signs; every key not yet retired
verifies. There is no built-in development key: a key published in the
source would let anyone mint tickets.
"""

from __future__ import annotations

import json
import secrets
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from runtime.private_files import create_private, write_private
from runtime.settings import Settings
from runtime.watched_file import WatchedFile

FILE_NAME = "ticket-secret"
LOCAL_KID = "local"


class SecretFileError(RuntimeError):
    """The secret file exists but cannot be trusted (readable by others) or read."""


@dataclass(frozen=True)
class TicketKey:
    """One HMAC key of the file; ``secret`` never shows in a repr."""

    kid: str
    secret: str = field(repr=False)
    sign_from_us: int = 0
    retire_at_us: int | None = None


def ticket_secret(settings: Settings) -> str:
    """The key spec to sign and verify with now (signing key first), in the clear: keep it
    out of logs and reprs.

    Raises SecretFileError if the home's file is readable by others, empty or malformed.
    """
    if settings.ticket_secret:  # a SecretStr is false when empty
        return settings.ticket_secret.get_secret_value()
    return spec_of(keys_at(read_ticket_keys(_local_file(settings)), time.time_ns() // 1000))


def spec_of(keys: dict[str, str]) -> str:
    return ",".join(f"{kid}:{secret}" for kid, secret in keys.items())


def keys_at(keys: list[TicketKey], now_us: int) -> dict[str, str]:
    """``{kid: secret}`` usable at ``now_us``: the signing key first, then the others that
    are not retired. Raises SecretFileError: none may sign yet."""
    live = [k for k in keys if k.retire_at_us is None or now_us < k.retire_at_us]
    signing = [k for k in live if k.sign_from_us <= now_us]
    if not signing:
        raise SecretFileError("no ticket key may sign now (all retired, or not yet due)")
    first = max(signing, key=lambda k: k.sign_from_us)
    return {first.kid: first.secret, **{k.kid: k.secret for k in live if k is not first}}


def _local_file(settings: Settings) -> Path:
    path = settings.home / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    # Whole or not at all: the origin and edges of one `up` start at the same moment.
    create_private(path, f"{LOCAL_KID}:{secrets.token_urlsafe(32)}\n".encode())
    return path


def read_ticket_keys(path: Path) -> list[TicketKey]:
    """The keys of a ticket-secret file, spec line or JSON.

    Raises SecretFileError: readable by others, unreadable, empty or malformed.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text().strip()
    except OSError as exc:
        raise SecretFileError(f"cannot read {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise SecretFileError(f"{path} is readable by others (mode {mode:o}); chmod 600 {path}")
    if not text:
        raise SecretFileError(f"{path} is empty; delete it to make a new one")
    if not text.startswith("{"):
        keys = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            kid, _, secret = part.partition(":")
            keys.append(TicketKey(kid, secret))
        return keys
    try:
        entries = json.loads(text)["keys"]
        return [TicketKey(str(e["kid"]), str(e["secret"]), int(e.get("sign_from_us", 0)),
                          None if e.get("retire_at_us") is None else int(e["retire_at_us"]))
                for e in entries]
    except (ValueError, KeyError, TypeError):
        raise SecretFileError(f"{path} is neither `kid:secret,...` nor JSON of keys") from None


def write_ticket_keys(path: Path, keys: list[TicketKey]) -> None:
    entries = [{"kid": k.kid, "secret": k.secret, "sign_from_us": k.sign_from_us,
                "retire_at_us": k.retire_at_us} for k in keys]
    write_private(path, (json.dumps({"keys": entries}, indent=1) + "\n").encode())


class KeyReloader:
    """Gives the keys usable now when they differ from the last ones it gave (the file
    changed, or a key's time came), else None; looks at most every ``check_every_s``.

    A file that turns unreadable keeps the keys in use (the signer logs nothing new);
    one that never was readable raises SecretFileError at the first call.
    """

    def __init__(self, path: Path, check_every_s: float = 1.0) -> None:
        self._file = WatchedFile(path, check_every_s)
        self.check_every_s = check_every_s
        self._parsed: list[TicketKey] | None = None
        self._given: dict[str, str] | None = None
        self._next = 0.0

    def __call__(self) -> dict[str, str] | None:
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + self.check_every_s
        if self._file.changed(force=True) or self._parsed is None:
            try:
                self._parsed = read_ticket_keys(self._file.path)
            except SecretFileError:
                if self._parsed is None:
                    raise
        try:
            keys = keys_at(self._parsed, time.time_ns() // 1000)
        except SecretFileError:
            return None  # none usable now: keep the keys in use
        if self._given is not None and list(keys.items()) == list(self._given.items()):
            return None  # (the order matters: the first key signs)
        self._given = keys
        return keys


def key_reloader(settings: Settings) -> KeyReloader | None:
    """The reloader of a local home's file; None when ``ticket_secret`` is set (those keys
    change with a restart)."""
    if settings.ticket_secret:
        return None
    return KeyReloader(_local_file(settings))


@dataclass(frozen=True)
class TicketRotation:
    kid: str
    sign_from_us: int
    retire_at_us: int


def rotate_ticket_keys(settings: Settings, now_us: int, publish_s: float) -> TicketRotation:
    """Add a ticket key that signs ``publish_s`` from now; the others retire once every
    ticket they signed has expired (the switch + the TTL + the clock skew); keys retired
    before now leave the file.

    Raises SecretFileError: ``ticket_secret`` is set (rotate it there: put the new key
    first and keep the old one until its tickets expire), or the file is unusable.
    """
    if settings.ticket_secret:
        raise SecretFileError(
            "the ticket keys come from POSITIONING_TICKET_SECRET: rotate them there (the new "
            "key first, the old kept for a ticket lifetime), or unset it to use the home's file")
    path = _local_file(settings)
    keys = read_ticket_keys(path)
    sign_from = now_us + int(publish_s * 1e6)
    retire_at = sign_from + int((settings.ticket_ttl_s + settings.ticket_clock_skew_s) * 1e6)
    kid = "t" + format(now_us // 1_000_000, "x")
    kept = [TicketKey(k.kid, k.secret, k.sign_from_us,
                      min(retire_at, k.retire_at_us if k.retire_at_us is not None else retire_at))
            for k in keys if k.retire_at_us is None or now_us < k.retire_at_us]
    if any(k.kid == kid for k in kept):
        raise SecretFileError(f"a ticket key {kid!r} was made this second already; try again")
    write_ticket_keys(path, [*kept, TicketKey(kid, secrets.token_urlsafe(32), sign_from)])
    return TicketRotation(kid, sign_from, retire_at)
