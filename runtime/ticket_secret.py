"""Where the ticket signing secret comes from: the setting, else a file per local home.

``POSITIONING_TICKET_SECRET`` (``kid:secret[,kid:secret...]``) wins. Without
it, every component of one local home shares ``<home>/ticket-secret``: 256
random bits made the first time, written with mode 0600 and reused on every
restart, so a stack's origin signs what its edges verify and nobody else
knows the key. There is no built-in development key: a key published in the
source would let anyone mint tickets.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from runtime.settings import Settings

FILE_NAME = "ticket-secret"
LOCAL_KID = "local"


class SecretFileError(RuntimeError):
    """The secret file exists but cannot be trusted (readable by others) or read."""


def ticket_secret(settings: Settings) -> str:
    """The key spec to sign and verify with, in the clear: keep it out of logs and reprs.

    Raises SecretFileError if the home's file is readable by others or empty.
    """
    if settings.ticket_secret:  # a SecretStr is false when empty
        return settings.ticket_secret.get_secret_value()
    return _local_secret(settings.home / FILE_NAME)


def _local_secret(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise SecretFileError(f"{path} is readable by others (mode {mode:o}); "
                                  f"chmod 600 {path}") from None
        spec = path.read_text().strip()
        if not spec:
            raise SecretFileError(f"{path} is empty; delete it to make a new one") from None
        return spec
    spec = f"{LOCAL_KID}:{secrets.token_urlsafe(32)}"
    with os.fdopen(fd, "w") as out:
        out.write(spec + "\n")
    return spec
