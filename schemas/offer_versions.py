"""Which of two records for one ticket is newer: the rule edges and the worker share.

An offer's version is its expiry (µs), which only grows for a ticket: a
retried login extends it. A tombstone's version is the expiry of the offer it
ends, and a revocation keeps it. So a replayed old record never replaces a
newer one, whatever order the records come in.
"""

from __future__ import annotations

Version = tuple[int, bool]
"""``(version µs, is a tombstone)``."""


def replaces(version: int, tombstone: bool, stored: Version | None) -> bool:
    """Whether a record of ``version`` (a tombstone if ``tombstone``) may replace ``stored``.

    An offer replaces an offer no newer than itself (an equal one is a
    re-send) and a revocation older than itself; a tombstone replaces what is
    no newer than the expiry it ends, and one without a version (0) anything.
    """
    if stored is None:
        return True
    held, revoked = stored
    if tombstone:
        return version == 0 or version >= held
    return version > held if revoked else version >= held
