"""Publishing login events to Kafka, acknowledged by every in-sync replica.

One idempotent producer (acks=all) is shared by all requests. Each request
awaits only its own record's acknowledgement; records of concurrent requests
are batched together by the producer (``linger_ms``), and nothing ever
flushes the producer for everyone. If the broker is unreachable the
publisher keeps trying to connect in the background and callers get
``PublisherUnavailable`` at once, which the origin turns into a 503.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from runtime.kafka_security import KafkaAccess
from runtime.retry import call_forever

log = logging.getLogger(__name__)


class PublisherUnavailable(RuntimeError):
    """Kafka did not acknowledge the record (down, or too slow)."""


class LoginPublisher:
    """``timeout_s``: how long a caller waits for its record's acknowledgement (and
    ``start`` for the first connection); ``linger_ms``: the producer's batching delay;
    ``access``: how it connects (runtime/kafka_security.py). It may be given
    after construction (the origin resolves it when it starts serving), but
    there is no default: ``start`` refuses to connect without one."""

    def __init__(self, bootstrap_servers: str, topic: str, timeout_s: float,
                 linger_ms: int = 1, *, access: KafkaAccess | None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.access = access
        self.topic = topic
        self.timeout_s = timeout_s
        self.linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._connector: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._producer is not None

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=self.linger_ms,
            # An idempotent producer never expires a batch; it retries until
            # the record is written. One attempt may hang on a leader that
            # died without closing its connections: half the login budget for
            # it leaves the other half for the retry on the new leader (a
            # leader election takes 2.3-3.4 s here, decision 0009).
            request_timeout_ms=max(int(self.timeout_s * 500), 1000),
            # Ask for fresh metadata soon after a leader is lost.
            retry_backoff_ms=50,
            **self._access().aiokafka_options(),
        )

    def _access(self) -> KafkaAccess:
        if self.access is None:
            raise RuntimeError("LoginPublisher has no KafkaAccess: set it before start()")
        return self.access

    async def start(self) -> None:
        """Connect now if possible, else keep trying in the background."""
        self._connector = asyncio.create_task(self._connect_forever())
        try:
            await asyncio.wait_for(asyncio.shield(self._connector), timeout=self.timeout_s)
        except TimeoutError:
            log.error("Kafka at %s is not reachable yet; logins get 503 until it is",
                      self.bootstrap_servers)

    async def _started_producer(self) -> AIOKafkaProducer:
        """A new producer, started; KafkaError (after stopping it) if the broker is not there."""
        producer = self._new_producer()
        try:
            await producer.start()
        except KafkaError:
            await producer.stop()
            raise
        return producer

    async def _connect_forever(self) -> None:
        """Connect, retrying forever with a capped backoff and a warning per failure."""
        self._producer = await call_forever(
            self._started_producer, f"connecting to Kafka at {self.bootstrap_servers}", log,
            retry_on=(KafkaError,), level=logging.WARNING)
        log.info("connected to Kafka at %s", self.bootstrap_servers)

    async def stop(self) -> None:
        if self._connector is not None and not self._connector.done():
            self._connector.cancel()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, key: bytes, value: bytes) -> None:
        """Return once the broker acknowledged the record; else PublisherUnavailable."""
        producer = self._producer
        if producer is None:
            raise PublisherUnavailable("not connected to Kafka")
        try:
            delivery = await producer.send(self.topic, value=value, key=key)
            await asyncio.wait_for(delivery, timeout=self.timeout_s)
        except (TimeoutError, KafkaError) as exc:
            raise PublisherUnavailable(f"Kafka did not acknowledge the login: {exc!r}") from exc
