"""Our own work per login, timed in one process without Kafka or Faust.

The steps the worker's ``LoginProcessor.begin`` takes for a login, in the
same order and with the same functions (decode and validate; read the
user's state, count the login, write the state back as JSON; compute the
offer; encode it as Avro), on synthetic logins of 3,000 users, three
times; µs per login, in total and per step::

    PYTHONPATH=$PWD python -m loadtest.bench.own_work --logins 10000

What Faust, aiokafka and the broker add is what ``loadtest.bench.floors``
measures; docs/performance.md puts the two side by side.
"""

from __future__ import annotations

import argparse
import time

import orjson

from engine.offers import compute_offer, shown_categories
from engine.state import Position, next_state, view_for_login
from engine.validation import validate_login
from loadtest.synthetic import SyntheticUsers
from runtime.clock import now_us
from runtime.settings import Settings
from schemas.codec import login_codec, offer_codec
from schemas.events import login_event
from schemas.tickets import signer_from_settings


def logins(count: int) -> list[bytes]:
    """``count`` encoded logins of 3,000 synthetic users, as the origin writes them."""
    signer = signer_from_settings(Settings())
    users = SyntheticUsers(3000, seed=1)
    codec = login_codec()
    out = []
    for _ in range(count):
        user_id, ip = users.draw()
        out.append(codec.encode(login_event(signer.issue(), user_id, ip, accepted_at_us=now_us(),
                                            user_agent="own-work")))
    return out


def time_steps(values: list[bytes]) -> dict[str, float]:
    """µs per login: each step, and ``total``, over ``values`` in order."""
    login_c, offer_c = login_codec(), offer_codec()
    states: dict[str, bytes] = {}
    spent = dict.fromkeys(("decode", "state", "offer", "encode"), 0.0)
    clock = time.perf_counter
    started = clock()
    for offset, value in enumerate(values):
        t0 = clock()
        login = login_c.decode(value)
        validate_login(login)
        t1 = clock()
        stored = states.get(login["user_id"])
        state = orjson.loads(stored) if stored else None
        position = Position(0, offset)
        view, _ = view_for_login(state, login["ticket_id"], position)
        t2 = clock()
        offer = compute_offer(login, view, created_at=now_us())
        t3 = clock()
        states[login["user_id"]] = orjson.dumps(next_state(
            state, login["ticket_id"], view, position, login["login_accepted_at"],
            offer["country"], shown_categories(offer), login["expires_at"], now_us()))
        t4 = clock()
        offer_c.encode(offer)
        t5 = clock()
        spent["decode"] += t1 - t0
        spent["state"] += (t2 - t1) + (t4 - t3)
        spent["offer"] += t3 - t2
        spent["encode"] += t5 - t4
    total = clock() - started
    per = {step: 1e6 * seconds / len(values) for step, seconds in spent.items()}
    return {"total": 1e6 * total / len(values), **per}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=10_000)
    args = parser.parse_args(argv)
    values = logins(args.logins)
    for _ in range(3):
        steps = time_steps(values)
        print("  ".join(f"{step} {us:.1f} µs" for step, us in steps.items()), flush=True)


if __name__ == "__main__":
    main()
