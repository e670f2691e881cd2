"""How the worker and the edges fetch: batches while a topic is busy, a long poll while it is quiet.

Busy: the broker answers a fetch once ``min_bytes`` are ready or ``wait_ms``
have passed (64 KiB, 5 ms), so a busy topic comes back in batches rather
than a record or two per round trip.

Quiet: the same settings would ask the broker 200 times a second for
nothing (an idle edge spent about 8 % of a core on it, the worker 12 %).
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
leaves the consumer batching. (At 500 logins/s on a slow hour, the long
poll without this rule put p50 at 0.6-2.9 s, against 0.17-0.18 s with no
long poll at all.)

aiokafka reads the wait and minimum from its Fetcher each time it builds a
fetch request, and the Fetcher's per-request step (``_proc_fetch_request``)
returns whether records came back; ``adapt_to_traffic`` wraps that step.
Both are private to aiokafka, so it checks they are there and fails loudly
if an upgrade removed them (tests/unit/test_fetch_tuning.py runs it against
the installed aiokafka and a real broker).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

from runtime.settings import Settings


class FetchTuning(NamedTuple):
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
    """Make a started aiokafka consumer long-poll after empty fetches and batch after full ones."""
    if tuning.idle_wait_ms <= 0:
        return
    fetcher = consumer._fetcher
    if fetcher is None or not all(hasattr(fetcher, name) for name in (
            "_proc_fetch_request", "_fetch_max_wait_ms", "_fetch_min_bytes", "_records")):
        raise RuntimeError("this aiokafka's Fetcher has no per-request step to adapt; "
                           "set POSITIONING_FETCH_IDLE_WAIT_MS=0")
    fetcher._proc_fetch_request = _switching_modes(fetcher, fetcher._proc_fetch_request, tuning)


def _switching_modes(fetcher: Any, proc: Callable[..., Awaitable[bool]],
                     tuning: FetchTuning) -> Callable[..., Awaitable[bool]]:
    @functools.wraps(proc)
    async def proc_then_switch(*args: Any) -> bool:
        got_records = await proc(*args)
        if got_records or fetcher._records:  # records came, or some wait to be handed over
            fetcher._fetch_max_wait_ms = tuning.wait_ms
            fetcher._fetch_min_bytes = tuning.min_bytes
        else:
            fetcher._fetch_max_wait_ms = tuning.idle_wait_ms
            fetcher._fetch_min_bytes = 1
        return got_records
    return proc_then_switch
