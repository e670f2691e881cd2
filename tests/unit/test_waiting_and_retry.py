"""runtime.waiting and runtime.retry: the one polling loop and the one retry policy."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from runtime.retry import call_forever
from runtime.waiting import TimedOut, wait_until, wait_until_async


def test_wait_until_returns_the_first_truthy_answer() -> None:
    answers = iter([None, 0, "", "there"])
    assert wait_until(lambda: next(answers), 5, "an answer", interval_s=0.001) == "there"


def test_wait_until_names_what_it_waited_for_when_it_times_out() -> None:
    with pytest.raises(TimedOut, match="waiting for the impossible"):
        wait_until(lambda: False, 0.05, "the impossible", interval_s=0.01)


async def test_wait_until_async_awaits_the_condition() -> None:
    calls = itertools.count()

    async def third_time() -> int | None:
        n = next(calls)
        return n if n >= 2 else None

    assert await wait_until_async(third_time, 5, "the third call", interval_s=0.001) == 2
    with pytest.raises(TimedOut):
        async def never() -> bool:
            return False
        await wait_until_async(never, 0.05, "never", interval_s=0.01)


async def test_call_forever_retries_logs_and_counts_each_failure(
        caplog: pytest.LogCaptureFixture) -> None:
    attempts = itertools.count(1)
    failures: list[BaseException] = []

    async def flaky() -> str:
        if next(attempts) < 3:
            raise ConnectionError("broker away")
        return "sent"

    with caplog.at_level(logging.ERROR):
        result = await call_forever(flaky, "sending", logging.getLogger("test"),
                                    on_failure=failures.append)
    assert result == "sent"
    assert [type(f) for f in failures] == [ConnectionError, ConnectionError]
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["sending failed"] * 2


async def test_call_forever_lets_other_errors_and_cancellation_through() -> None:
    async def bug() -> None:
        raise KeyError("not a network fault")

    with pytest.raises(KeyError):
        await call_forever(bug, "step", logging.getLogger("test"), retry_on=(ConnectionError,))

    async def down() -> None:
        raise ConnectionError("down")

    task = asyncio.create_task(call_forever(down, "step", logging.getLogger("test")))
    await asyncio.sleep(0)  # let it fail once and back off
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
