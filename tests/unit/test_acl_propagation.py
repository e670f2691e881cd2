"""Waiting out ACL propagation: a refusal is retried within the window, nothing else is."""

from __future__ import annotations

import time

import pytest

from runtime.acl_propagation import retrying, through_propagation


class Refused(Exception):
    pass


def test_a_refusal_that_clears_within_the_window_is_retried() -> None:
    calls = []

    def step() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Refused("not on this broker yet")
        return "granted"

    result = None
    for attempt in retrying("step", lambda e: isinstance(e, Refused), window_s=10.0):
        with attempt:
            result = step()
    assert (result, len(calls)) == ("granted", 3)


async def test_a_refusal_that_outlasts_the_window_is_raised() -> None:
    calls = []

    async def step() -> None:
        calls.append(1)
        raise Refused("never granted")

    started = time.monotonic()
    with pytest.raises(Refused, match="never granted"):
        await through_propagation(step, "step", lambda e: isinstance(e, Refused), window_s=0.3)
    assert len(calls) > 1
    assert time.monotonic() - started < 3.0


async def test_another_error_is_raised_at_once() -> None:
    calls = []

    async def step() -> None:
        calls.append(1)
        raise ValueError("broken")

    with pytest.raises(ValueError):
        await through_propagation(step, "step", lambda e: isinstance(e, Refused), window_s=10.0)
    assert len(calls) == 1
