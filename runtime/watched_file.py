"""A file whose changes a long-running process picks up: keys that rotate without a restart."""

from __future__ import annotations

import time
from pathlib import Path


class WatchedFile:
    """A file read again when its modification time or size changes, looked at most every
    ``check_every_s`` seconds."""

    def __init__(self, path: Path, check_every_s: float) -> None:
        self.path = path
        self.check_every_s = check_every_s
        self._seen: tuple[int, int, int] | None = None
        self._next_check = 0.0

    def changed(self, force: bool = False) -> bool:
        """Whether the file changed since the last look (``force``: look now, whenever the
        last look was). True at the first look, even if the file is missing."""
        now = time.monotonic()
        if now < self._next_check and not force:
            return False
        self._next_check = now + self.check_every_s
        try:
            st = self.path.stat()
        except OSError:
            return self._seen is None  # first look: let the reader raise
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        if seen == self._seen:
            return False
        self._seen = seen
        return True
