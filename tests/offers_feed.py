"""Test helper: writes offers straight onto the offers topic, as the worker would: signed with
the home's signing key (unless ``offer_signing=off``), tombstones versioned."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

from engine.offers import compute_offer
from engine.state import new_user_view
from pipeline.offer_signing import BatchSigning
from pipeline.records import OutRecord
from runtime.kafka_security import Role, client_options
from runtime.offer_keys import signing_keyring
from runtime.settings import Settings
from schemas.codec import offer_codec
from schemas.events import EXPIRES_AT_HEADER, login_event, offer_headers
from schemas.tickets import Ticket, TicketSigner


def offer_for(ticket: Ticket, user_id: str = "edge-user", ip: str = "81.2.69.160") -> dict[str, Any]:
    login = login_event(ticket, user_id, ip, accepted_at_us=ticket.issued_at_us)
    return compute_offer(login, new_user_view(), created_at=ticket.issued_at_us + 1)


class OfferFeed:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.signer = TicketSigner.from_spec(settings.ticket_secret.get_secret_value(),
                                             settings.ticket_ttl_s)
        self.producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers,
                                         **client_options(settings, Role.ADMIN), acks="all",
                                         linger_ms=5, max_batch_size=512 * 1024)
        keyring = signing_keyring(settings)
        self.signing = None if keyring is None else BatchSigning(settings.offers_topic, keyring,
                                                           settings.partitions)

    def signed(self, records: list[OutRecord]) -> list[OutRecord]:
        return records if self.signing is None else self.signing.sign(records)

    async def send_as_is(self, records: list[OutRecord]) -> None:
        """Produce ``records`` unsigned by this feed (as they are), acknowledged."""
        futures = [await self.producer.send(r.topic, r.value, key=r.key, headers=r.headers)
                   for r in records]
        for future in futures:
            await future

    async def send(self, records: list[OutRecord]) -> list[OutRecord]:
        """Sign ``records`` as one batch and produce them, acknowledged; returns them signed."""
        signed = self.signed(records)
        futures = [await self.producer.send(r.topic, r.value, key=r.key, headers=r.headers)
                   for r in signed]
        for future in futures:
            await future
        return signed

    async def __aenter__(self) -> OfferFeed:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def publish(self, ticket: Ticket | None = None) -> tuple[Ticket, dict[str, Any]]:
        ticket = ticket or self.signer.issue()
        offer = offer_for(ticket)
        await self.send([OutRecord(self.settings.offers_topic, ticket.ticket_id.encode(),
                                   offer_codec().encode(offer), offer_headers(offer))])
        return ticket, offer

    async def tombstone(self, ticket: Ticket) -> None:
        """The tombstone the worker would send for ``ticket``'s offer once it expired."""
        version = str(ticket.expires_at_us).encode()
        await self.send([OutRecord(self.settings.offers_topic, ticket.ticket_id.encode(), None,
                                   [(EXPIRES_AT_HEADER, version)])])

    async def flood(self, count: int) -> list[bytes]:
        """Many offers fast: one template payload under many distinct ticket ids."""
        template_ticket = self.signer.issue()
        offer = offer_for(template_ticket)
        payload = offer_codec().encode(offer)
        headers = offer_headers(offer)
        keys = [f"flood{i:017d}".encode() for i in range(count)]
        topic = self.settings.offers_topic
        for start in range(0, count, 5000):
            await self.send([OutRecord(topic, key, payload, headers)
                             for key in keys[start:start + 5000]])
        return keys
