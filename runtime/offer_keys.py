"""The keys offers are signed and verified with: two JSON files, and the keyrings that read them.

- The signing file (``offer_signing_keys_file``, mode 0600, the worker's
  alone) holds Ed25519 private keys: ``{"keys": [{"kid", "seed",
  "sign_from_us"}]}``, ``seed`` the 32-byte private key in base64url. The
  worker signs with the newest key whose ``sign_from_us`` has come.
- The verify file (``offer_verify_keys_file``, edges) holds the public
  halves: ``{"keys": [{"kid", "public", "retire_at_us"}]}``. An edge trusts
  every key whose ``retire_at_us`` is unset or still to come.

Both are re-read when they change (``SigningKeyring``, ``VerifyKeyring``),
so a rotation needs no restart: a new key is published to the edges before
the worker may sign with it, and the old one is retired only after every
record it signed has expired (``positioning keys rotate``; the procedure is in
docs/operations.md). A local home makes both files on first use, under
``<home>/keys/``; a real deployment points the settings at its own.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from runtime.private_files import write_private
from runtime.settings import Settings, env_var
from runtime.watched_file import WatchedFile

KEYS_DIR = "keys"
SIGNING_FILE = "offer-signing.json"
VERIFY_FILE = "offer-verify.json"
KID = re.compile(r"[A-Za-z0-9_-]{1,16}")


class OfferKeyError(RuntimeError):
    """A key file is missing, unsafe or malformed, or names no usable key; the message says
    which and the fix."""


@dataclass(frozen=True)
class SigningKey:
    """One private key of the signing file; ``seed`` never shows in a repr."""

    kid: str
    seed: bytes = field(repr=False)
    sign_from_us: int = 0

    def private_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    def public(self) -> VerifyKey:
        raw = self.private_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return VerifyKey(self.kid, raw)


@dataclass(frozen=True)
class VerifyKey:
    """One public key of the verify file, trusted until ``retire_at_us`` (None: no end)."""

    kid: str
    public: bytes
    retire_at_us: int | None = None

    def trusted_at(self, now_us: int) -> bool:
        return self.retire_at_us is None or now_us < self.retire_at_us


def signing_keys_file(settings: Settings) -> Path:
    return settings.offer_signing_keys_file or settings.home / KEYS_DIR / SIGNING_FILE


def verify_keys_file(settings: Settings) -> Path:
    return settings.offer_verify_keys_file or settings.home / KEYS_DIR / VERIFY_FILE


def new_signing_key(now_us: int, sign_from_us: int | None = None) -> SigningKey:
    """A fresh key named after its creation time (``o`` + seconds, base 36)."""
    kid = "o" + _base36(now_us // 1_000_000) + _base36(now_us % 1_000_000)
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    return SigningKey(kid[:16], seed, now_us if sign_from_us is None else sign_from_us)


def ensure_local_offer_keys(settings: Settings) -> None:
    """Make the local home's key files if neither exists (one key, signing at once).

    Files named by the settings are never made: they are the deployment's.

    Raises OfferKeyError: only one of the two local files exists.
    """
    signing, verify = signing_keys_file(settings), verify_keys_file(settings)
    if settings.offer_signing_keys_file or settings.offer_verify_keys_file:
        return
    if signing.exists() and verify.exists():
        return
    signing.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(signing.parent, 0o700)
    # The components of a stack start together: one makes the pair, the others wait for it.
    with open(signing.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if signing.exists() and verify.exists():
            return
        if signing.exists() or verify.exists():
            raise OfferKeyError(f"only one of {signing} and {verify} exists: delete it to "
                                "make a new pair (offers signed with the old key will not "
                                "be served)")
        key = new_signing_key(time.time_ns() // 1000)
        write_verify_keys(verify, [key.public()])
        write_signing_keys(signing, [key])


def read_signing_keys(path: Path) -> list[SigningKey]:
    """The keys of a signing file, oldest first.

    Raises OfferKeyError: missing, readable by others, or malformed.
    """
    data = _read_json(path, private=True)
    out = []
    for entry in _entries(data, path, ("kid", "seed", "sign_from_us")):
        seed = _b64(entry["seed"], path)
        if len(seed) != 32:
            raise OfferKeyError(f"{path}: key {entry['kid']!r} is not a 32-byte Ed25519 seed")
        out.append(SigningKey(entry["kid"], seed, _int(entry["sign_from_us"], path)))
    return sorted(out, key=lambda k: k.sign_from_us)


def read_verify_keys(path: Path) -> list[VerifyKey]:
    """The keys of a verify file. Raises OfferKeyError: missing or malformed."""
    data = _read_json(path, private=False)
    out = []
    for entry in _entries(data, path, ("kid", "public")):
        public = _b64(entry["public"], path)
        if len(public) != 32:
            raise OfferKeyError(f"{path}: key {entry['kid']!r} is not a 32-byte Ed25519 key")
        retire = entry.get("retire_at_us")
        out.append(VerifyKey(entry["kid"], public, None if retire is None else _int(retire, path)))
    return out


def write_signing_keys(path: Path, keys: list[SigningKey]) -> None:
    entries = [{"kid": k.kid, "seed": _b64e(k.seed), "sign_from_us": k.sign_from_us}
               for k in keys]
    write_private(path, (json.dumps({"keys": entries}, indent=1) + "\n").encode())


def write_verify_keys(path: Path, keys: list[VerifyKey]) -> None:
    """Written new and renamed into place, like the signing file (no secret in it)."""
    entries = [{"kid": k.kid, "public": _b64e(k.public), "retire_at_us": k.retire_at_us}
               for k in keys]
    write_private(path, (json.dumps({"keys": entries}, indent=1) + "\n").encode())
    os.chmod(path, 0o644)


class SigningKeyring:
    """The worker's signing file, re-read when it changes (checked every ``check_every_s``).

    ``current(now_us)`` is the newest key whose ``sign_from_us`` has come.
    Raises OfferKeyError (from ``current``): the file is unreadable, or no key
    may sign yet. A file that turns bad after a good read keeps the last good
    keys and is reported by ``problem``.
    """

    def __init__(self, path: Path, check_every_s: float = 1.0) -> None:
        self._file = WatchedFile(path, check_every_s)
        self._keys: list[SigningKey] | None = None
        self.problem: str | None = None

    def _refresh(self) -> list[SigningKey]:
        if self._file.changed() or self._keys is None:
            try:
                self._keys = read_signing_keys(self._file.path)
                self.problem = None
            except OfferKeyError as exc:
                if self._keys is None:
                    raise
                self.problem = str(exc)
        assert self._keys is not None
        return self._keys

    def current(self, now_us: int) -> SigningKey:
        usable = [k for k in self._refresh() if k.sign_from_us <= now_us]
        if not usable:
            raise OfferKeyError(f"no key of {self._file.path} may sign yet")
        return usable[-1]


class VerifyKeyring:
    """The edges' verify file, re-read when it changes; ``get(kid)`` the trusted public key.

    ``refresh()`` (called by the edge's housekeeping) re-reads a changed file
    and says whether the trusted set changed, so remembered verdicts are
    dropped. A file that turns bad keeps the last good keys (``problem``
    says why). Raises OfferKeyError at construction: no readable file.
    """

    def __init__(self, path: Path, check_every_s: float = 2.0) -> None:
        self._file = WatchedFile(path, check_every_s)
        self._keys: dict[str, tuple[VerifyKey, Ed25519PublicKey]] = {}
        self._trusted: frozenset[str] = frozenset()
        self.problem: str | None = None
        self._file.changed()
        self._load(read_verify_keys(path))
        self.refresh(time.time_ns() // 1000)

    def _load(self, keys: list[VerifyKey]) -> None:
        self._keys = {k.kid: (k, Ed25519PublicKey.from_public_bytes(k.public)) for k in keys}

    def refresh(self, now_us: int, force: bool = False) -> bool:
        """Re-read the file if it changed (``force``: look now); True if the keys trusted at
        ``now_us`` changed."""
        if self._file.changed(force):
            try:
                self._load(read_verify_keys(self._file.path))
                self.problem = None
            except OfferKeyError as exc:
                self.problem = str(exc)
        trusted = frozenset(kid for kid, (k, _) in self._keys.items() if k.trusted_at(now_us))
        changed, self._trusted = trusted != self._trusted, trusted
        return changed

    @property
    def trusted(self) -> frozenset[str]:
        """The key ids trusted at the last ``refresh``."""
        return self._trusted

    def get(self, kid: str) -> Ed25519PublicKey | None:
        if kid not in self._trusted:
            return None
        return self._keys[kid][1]


def _read_json(path: Path, private: bool) -> Any:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text()
    except OSError as exc:
        setting = env_var("offer_signing_keys_file" if private else "offer_verify_keys_file")
        raise OfferKeyError(f"cannot read the offer key file {path} ({exc.strerror}): set "
                            f"{setting}, or run `positioning keys rotate` in the local home, "
                            f"or set {env_var('offer_signing')}=off on a trusted network "
                            "only") from None
    if private and mode & 0o077:
        raise OfferKeyError(f"{path} is readable by others (mode {mode:o}); chmod 600 {path}")
    try:
        return json.loads(text)
    except ValueError:
        raise OfferKeyError(f"{path} is not JSON") from None


def _entries(data: Any, path: Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not keys:
        raise OfferKeyError(f"{path} has no keys (a JSON object with a non-empty `keys` list)")
    seen = set()
    for entry in keys:
        if not isinstance(entry, dict) or any(name not in entry for name in required):
            raise OfferKeyError(f"{path}: each key needs {', '.join(required)}")
        kid = entry["kid"]
        if not isinstance(kid, str) or not KID.fullmatch(kid) or kid in seen:
            raise OfferKeyError(f"{path}: key id {kid!r} is not 1-16 of [A-Za-z0-9_-], or "
                                "appears twice")
        seen.add(kid)
    return keys


def _b64(text: Any, path: Path) -> bytes:
    if not isinstance(text, str):
        raise OfferKeyError(f"{path}: a key is not a base64url string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise OfferKeyError(f"{path}: a key is not base64url") from None


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _int(value: Any, path: Path) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise OfferKeyError(f"{path}: a time is not a non-negative integer (µs)")
    return value


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def verify_keyring(settings: Settings) -> VerifyKeyring | None:
    """The keyring an edge verifies offers with; None when ``offer_signing`` is ``off``.

    Raises OfferKeyError: the verify file is missing, malformed or trusts no key.
    """
    if not settings.signs_offers:
        return None
    ensure_local_offer_keys(settings)
    keyring = VerifyKeyring(verify_keys_file(settings))
    if not keyring.trusted:
        raise OfferKeyError(f"{verify_keys_file(settings)} trusts no key now (all retired): "
                            "add the worker's current public key")
    return keyring


def signing_keyring(settings: Settings) -> SigningKeyring | None:
    """The keyring the worker signs offers with; None when ``offer_signing`` is ``off``.

    Raises OfferKeyError: the signing file is missing, unsafe, malformed, or
    has no key that may sign now.
    """
    if not settings.signs_offers:
        return None
    ensure_local_offer_keys(settings)
    keyring = SigningKeyring(signing_keys_file(settings))
    keyring.current(time.time_ns() // 1000)  # fail now, not at the first offer
    return keyring


@dataclass(frozen=True)
class Rotation:
    """What ``rotate_offer_keys`` did: the new key, when it signs, and when the old retire."""

    kid: str
    sign_from_us: int
    retire_at_us: int
    retired: tuple[str, ...]


def rotate_offer_keys(settings: Settings, now_us: int, publish_s: float = 60.0) -> Rotation:
    """Add a key that signs ``publish_s`` from now, and retire the others after every offer
    they may still sign has expired.

    The new public key goes to the verify file first, then the private key
    to the signing file, so no edge meets a key it does not know yet (edges
    re-read within seconds; ``publish_s`` leaves them a minute). The other
    keys get ``retire_at_us`` = the switch + the ticket lifetime + the clock
    skew in the verify file, and keys retired before now leave both files.

    Raises OfferKeyError: a file is unreadable, unsafe or malformed.
    """
    ensure_local_offer_keys(settings)
    signing_path, verify_path = signing_keys_file(settings), verify_keys_file(settings)
    signing, verify = read_signing_keys(signing_path), read_verify_keys(verify_path)
    sign_from = now_us + int(publish_s * 1e6)
    new = new_signing_key(now_us, sign_from)
    lifetime_us = int((settings.ticket_ttl_s + settings.ticket_clock_skew_s) * 1e6)
    retire_at = sign_from + lifetime_us
    kept = [k for k in verify if k.trusted_at(now_us)]
    gone = {k.kid for k in verify} - {k.kid for k in kept}
    verify = [VerifyKey(k.kid, k.public, min(retire_at, k.retire_at_us or retire_at))
              for k in kept] + [new.public()]
    write_verify_keys(verify_path, verify)
    write_signing_keys(signing_path, [k for k in signing if k.kid not in gone] + [new])
    return Rotation(new.kid, sign_from, retire_at, tuple(sorted(gone)))
