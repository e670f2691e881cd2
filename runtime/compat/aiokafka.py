"""aiokafka's consumer internals that the fetch tuning needs (runtime/fetch_tuning.py).

aiokafka takes ``fetch_max_wait_ms`` and ``fetch_min_bytes`` only when a
consumer is built, and copies them into its Fetcher when the consumer
starts; nothing public changes them afterwards, and nothing public tells
whether a fetch brought records. The fetch tuning needs both: Faust builds
the worker's consumer with its own hard-coded values, and the fetch tuning
chooses the values for every request as it is built
(docs/decisions/0007-fetch-tuning.md, docs/decisions/0014-answer-on-the-first-record.md).

Private names touched (tests/unit/test_compat.py checks each exists):

- ``AIOKafkaConsumer._fetch_max_wait_ms``, ``._fetch_min_bytes``: read at
  ``start()`` to build the Fetcher; written by ``set_fetch_limits``.
- ``AIOKafkaConsumer._fetcher``: the started consumer's Fetcher.
- ``Fetcher._fetch_max_wait_ms``, ``._fetch_min_bytes``: read each time a
  fetch request is built; written by ``set_fetch_limits``.
- ``Fetcher._proc_fetch_request(assignment, node_id, request) -> bool``: the
  per-request step, returns whether records came back; wrapped by
  ``wrap_fetch_step``.
- ``Fetcher._get_actions_per_node(assignment)``: builds the next fetch
  requests (it leaves out the partitions whose records are not all handed
  over); wrapped by ``wrap_fetch_planning``.
- ``Fetcher._records``: the records fetched and not yet handed over.
- ``FetchRequest._max_wait_ms``, ``._min_bytes``: what one request asked
  (``asked_limits``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.protocol.fetch import FetchRequest

from runtime.compat import MissingInternal, Version, require_version

PRIVATE_NAMES: dict[type, tuple[str, ...]] = {
    AIOKafkaConsumer: ("_fetcher", "_fetch_max_wait_ms", "_fetch_min_bytes",
                       "_isolation_level"),
    Fetcher: ("_proc_fetch_request", "_get_actions_per_node", "_records", "_fetch_max_wait_ms",
              "_fetch_min_bytes"),
    FetchRequest: ("_max_wait_ms", "_min_bytes"),
}
TESTED: tuple[Version, Version] = ((0, 14), (0, 15))  # [from, to); tested with 0.14.0
_LIMITS = ("_fetch_max_wait_ms", "_fetch_min_bytes")


def check_version() -> str:
    """The installed aiokafka version; ``UnsupportedVersion`` outside ``TESTED``."""
    return require_version("aiokafka", TESTED, __name__)


check_version()


@dataclass(frozen=True)
class FetchStep:
    """One fetch request to one broker, answered and processed by the Fetcher.

    ``got_records``: the answer brought records. ``held_before`` and
    ``held_after``: the Fetcher held records not yet handed to the
    application when the step began and when it ended. ``request`` is
    aiokafka's request object, opaque (``asked_limits`` reads it).
    """

    got_records: bool
    held_before: bool
    held_after: bool
    request: Any


def _require(obj: Any, names: tuple[str, ...], what: str) -> None:
    missing = [name for name in names if not hasattr(obj, name)]
    if missing:
        raise MissingInternal(
            f"aiokafka's {what} has no {', '.join(missing)} (runtime/compat/aiokafka.py relies "
            f"on them): this aiokafka changed its internals; set POSITIONING_FETCH_IDLE_WAIT_MS=0 "
            f"and pin aiokafka to the tested range")


def _fetcher(consumer: AIOKafkaConsumer) -> Any:
    _require(consumer, ("_fetcher",), "consumer")
    return consumer._fetcher


def set_fetch_limits(consumer: AIOKafkaConsumer, wait_ms: int, min_bytes: int) -> None:
    """Make the consumer's fetches wait at most ``wait_ms`` (ms) for ``min_bytes`` (bytes).

    Before ``start()`` this sets what the consumer will build its Fetcher
    with; after, the Fetcher's values too, so the next fetch request asks
    for them. Raises ``MissingInternal`` if an attribute is not there
    (writing it anyway would create an attribute aiokafka never reads).
    """
    _require(consumer, _LIMITS, "consumer")
    fetcher = _fetcher(consumer)
    if fetcher is not None:
        _require(fetcher, _LIMITS, "Fetcher")
        fetcher._fetch_max_wait_ms = wait_ms
        fetcher._fetch_min_bytes = min_bytes
    consumer._fetch_max_wait_ms = wait_ms
    consumer._fetch_min_bytes = min_bytes


def read_committed(consumer: AIOKafkaConsumer) -> None:
    """Make a consumer not started yet read only committed records (``isolation_level``
    ``read_committed``): records of an aborted transaction are skipped.

    Faust builds the worker's consumer itself and asks ``read_committed`` only
    with its own exactly-once mode. Raises ``MissingInternal`` if the
    attribute is not there, and ``RuntimeError`` if the consumer has started
    (its Fetcher was built with the old level).
    """
    _require(consumer, ("_isolation_level",), "consumer")
    if _fetcher(consumer) is not None:
        raise RuntimeError("the consumer has started: its isolation level is fixed")
    consumer._isolation_level = "read_committed"


def fetch_limits(consumer: AIOKafkaConsumer) -> tuple[int, int]:
    """``(wait_ms, min_bytes)`` the consumer's next fetch request will ask for."""
    fetcher = _fetcher(consumer)
    holder = consumer if fetcher is None else fetcher
    _require(holder, _LIMITS, "consumer" if fetcher is None else "Fetcher")
    return holder._fetch_max_wait_ms, holder._fetch_min_bytes


def wrap_fetch_step(consumer: AIOKafkaConsumer, after: Callable[[FetchStep], None]) -> None:
    """Call ``after`` with each fetch step of a started consumer, once the step is done.

    ``after`` runs on the consumer's event loop, before the Fetcher builds
    its next request to that broker, so limits it sets (``set_fetch_limits``)
    apply to that request. Wrapping twice calls both, the first wrapped first.
    Raises ``MissingInternal`` if the consumer is not started or aiokafka's
    Fetcher has no per-request step.
    """
    fetcher = _fetcher(consumer)
    if fetcher is None:
        raise MissingInternal("wrap_fetch_step needs a started consumer (it has no Fetcher yet)")
    _require(fetcher, ("_proc_fetch_request", "_records", *_LIMITS), "Fetcher")
    step: Callable[..., Awaitable[bool]] = fetcher._proc_fetch_request

    @functools.wraps(step)
    async def step_then_report(assignment: Any, node_id: int, request: Any) -> bool:
        held_before = bool(fetcher._records)
        got_records = await step(assignment, node_id, request)
        after(FetchStep(bool(got_records), held_before, bool(fetcher._records), request))
        return got_records

    fetcher._proc_fetch_request = step_then_report


def wrap_fetch_planning(consumer: AIOKafkaConsumer,
                        before: Callable[[Collection[TopicPartition]], None]) -> None:
    """Call ``before(held)`` each time a started consumer's Fetcher is about to build fetch requests.

    ``held`` holds the partitions whose fetched records the application has
    not all taken yet: the requests about to be built leave them out. Limits
    ``before`` sets (``set_fetch_limits``) apply to the requests built right
    after it returns. The Fetcher plans on every wake-up, including ones
    that build no request, so ``before`` must be cheap (and must not keep
    ``held``, a live view). Raises ``MissingInternal`` if the consumer is not
    started or aiokafka's Fetcher has no planning step.
    """
    fetcher = _fetcher(consumer)
    if fetcher is None:
        raise MissingInternal("wrap_fetch_planning needs a started consumer (it has no Fetcher "
                              "yet)")
    _require(fetcher, ("_get_actions_per_node", "_records", *_LIMITS), "Fetcher")
    plan: Callable[[Any], Any] = fetcher._get_actions_per_node

    @functools.wraps(plan)
    def choose_then_plan(assignment: Any) -> Any:
        before(fetcher._records.keys())
        return plan(assignment)

    fetcher._get_actions_per_node = choose_then_plan


def asked_limits(request: Any) -> tuple[int, int]:
    """``(wait_ms, min_bytes)`` one fetch request (``FetchStep.request``) asked the broker for."""
    return request._max_wait_ms, request._min_bytes
