"""``positioning produce``: synthetic logins straight onto the ``logins`` topic.

It signs real tickets (so edges accept them) and writes the same LoginEvent
the origin writes, at a fixed rate or as fast as the broker takes them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from engine.markets import country_of
from loadtest.synthetic import SyntheticUsers
from runtime.clock import now_us
from runtime.kafka_security import Role, client_options
from runtime.settings import Settings
from schemas.codec import login_codec
from schemas.events import login_event
from schemas.tickets import signer_from_settings


@dataclass
class ProduceSummary:
    sent: int = 0
    failed: int = 0
    seconds: float = 0.0
    users: set[str] = field(default_factory=set)
    countries: Counter[str] = field(default_factory=Counter)
    tickets: list[str] = field(default_factory=list)

    def render(self) -> str:
        rate = self.sent / self.seconds if self.seconds else 0.0
        top = ", ".join(f"{cc} {n}" for cc, n in self.countries.most_common(8))
        return (f"sent {self.sent} logins ({self.failed} failed) in {self.seconds:.2f}s = "
                f"{rate:,.0f}/s; {len(self.users)} distinct users; "
                f"{len(self.countries)} countries (top: {top})")


async def produce(settings: Settings, count: int, rate: float, users: int | None = None,
                  seed: int = 1, progress: bool = True, keep_tickets: bool = False
                  ) -> ProduceSummary:
    """Send ``count`` logins at ``rate`` per second (0: as fast as possible)."""
    signer = signer_from_settings(settings)
    synthetic = SyntheticUsers(users or max(1, count // 3), seed=seed)
    codec = login_codec()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers,
        **client_options(settings, Role.ORIGIN), acks="all",
                                enable_idempotence=True, linger_ms=5,
                                max_batch_size=256 * 1024)
    await producer.start()
    summary = ProduceSummary()
    bar = tqdm(total=count, unit="login", disable=not progress)
    pending: list[asyncio.Future] = []
    started = time.perf_counter()
    try:
        for i in range(count):
            if rate > 0:
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            user_id, ip = synthetic.draw()
            ticket = signer.issue()
            event = login_event(ticket, user_id, ip, accepted_at_us=now_us(),
                                user_agent="positioning-produce")
            pending.append(await producer.send(settings.logins_topic, codec.encode(event),
                                               key=user_id.encode()))
            summary.users.add(user_id)
            summary.countries[country_of(ip)] += 1
            if keep_tickets:
                summary.tickets.append(ticket.token)
            if len(pending) >= 1000:
                summary.failed += await _settle(pending, bar)
        summary.failed += await _settle(pending, bar)
    finally:
        await producer.stop()
        bar.close()
    summary.seconds = time.perf_counter() - started
    summary.sent = count - summary.failed
    return summary


async def _settle(pending: list[asyncio.Future], bar: tqdm) -> int:
    results = await asyncio.gather(*pending, return_exceptions=True)
    bar.update(len(pending))
    pending.clear()
    return sum(1 for r in results if isinstance(r, BaseException))
