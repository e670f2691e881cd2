"""How the worker and the edges fetch: batches while a topic is busy, a long poll while it is quiet.

Busy: the broker answers a fetch once ``min_bytes`` are ready or ``wait_ms``
have passed (64 KiB, 5 ms), so a busy topic comes back in batches rather
than a record or two per round trip.

Quiet: the same settings would ask the broker 200 times a second for
nothing, a real share of an idle process's CPU (figures: decision 0007).
So after a fetch that came back empty, the next one asks for one byte and
may wait ``idle_wait_ms``: the broker answers the moment a record lands,
so the first record after a quiet spell is delivered at once, sooner than a
5 ms batch would be. After a fetch that brought records, the consumer
batches again. ``idle_wait_ms=0`` turns the long poll off.

Only an idle consumer long-polls. aiokafka keeps one fetch in flight per
broker, for the partitions whose records have all been handed over; a
consumer that is still working through records of other partitions (the
worker when it is behind) would park its next fetch on the quiet ones, and
the partitions it then drains would wait behind that fetch for up to
``idle_wait_ms``. So while the Fetcher still holds records, an empty fetch
leaves the consumer batching (what long-polling without this rule cost a
busy worker: decision 0007).

aiokafka offers neither a way to change the wait and minimum of a running
consumer nor a signal that a fetch came back empty; both go through
runtime/compat/aiokafka.py, which fails loudly if an upgrade removed the
internals they need (docs/decisions/0007-fetch-tuning.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from runtime.compat.aiokafka import FetchStep, set_fetch_limits, wrap_fetch_step
from runtime.settings import Settings


class FetchTuning(NamedTuple):
    """A consumer's fetch settings: ``wait_ms`` and ``min_bytes`` while busy (the
    broker answers when ``min_bytes`` bytes are ready or ``wait_ms`` ms passed),
    ``idle_wait_ms`` (ms) the long poll while quiet, 0 for none."""

    wait_ms: int = 5
    min_bytes: int = 1
    idle_wait_ms: int = 0

    def query(self) -> str:
        """As a URL query (the worker's Faust transport reads it from the broker URL)."""
        return (f"fetch_wait_ms={self.wait_ms}&fetch_min_bytes={self.min_bytes}"
                f"&fetch_idle_wait_ms={self.idle_wait_ms}")

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> FetchTuning:
        default = cls()
        return cls(int(query.get("fetch_wait_ms", default.wait_ms)),
                   int(query.get("fetch_min_bytes", default.min_bytes)),
                   int(query.get("fetch_idle_wait_ms", default.idle_wait_ms)))

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchTuning:
        return cls(settings.fetch_wait_ms, settings.fetch_min_bytes, settings.fetch_idle_wait_ms)


def adapt_to_traffic(consumer: Any, tuning: FetchTuning) -> None:
    """Make a started aiokafka consumer long-poll after empty fetches and batch after full ones.

    Does nothing when ``tuning.idle_wait_ms`` is 0. Raises
    ``runtime.compat.MissingInternal`` if this aiokafka lacks the internals
    it needs (then set ``POSITIONING_FETCH_IDLE_WAIT_MS=0``).
    """
    if tuning.idle_wait_ms <= 0:
        return

    def switch_modes(step: FetchStep) -> None:
        if step.got_records or step.held_after:  # records came, or some wait to be handed over
            set_fetch_limits(consumer, tuning.wait_ms, tuning.min_bytes)
        else:
            set_fetch_limits(consumer, tuning.idle_wait_ms, 1)

    wrap_fetch_step(consumer, switch_modes)
