"""Files only their owner may read: keys, passwords, configurations that hold them.

``write_private`` never leaves the secret readable by others, even for a
moment: it writes a new file created with mode 0600 next to the target and
renames it over the target (atomic on POSIX), so an existing file with a
wider mode is replaced, not rewritten in place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically.

    Raises OSError: the directory is not writable.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def create_private(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data`` and mode 0600 unless it exists; whether this call made it.

    The file appears whole or not at all (written aside, then hard-linked into
    place, which fails if the name is taken): a process that starts at the same
    moment never reads it half written, and never overwrites another's.

    Raises OSError: the directory is not writable.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)
