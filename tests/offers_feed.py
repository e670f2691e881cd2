"""Test helper: writes offers straight onto the offers topic, as the worker would."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

from engine.offers import compute_offer
from engine.state import new_user_view
from runtime.kafka_security import Role, client_options
from runtime.settings import Settings
from schemas.codec import offer_codec
from schemas.events import login_event, offer_headers
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

    async def __aenter__(self) -> OfferFeed:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def publish(self, ticket: Ticket | None = None) -> tuple[Ticket, dict[str, Any]]:
        ticket = ticket or self.signer.issue()
        offer = offer_for(ticket)
        await self.producer.send_and_wait(self.settings.offers_topic, offer_codec().encode(offer),
                                          key=ticket.ticket_id.encode(), headers=offer_headers(offer))
        return ticket, offer

    async def tombstone(self, ticket: Ticket) -> None:
        await self.producer.send_and_wait(self.settings.offers_topic, None,
                                          key=ticket.ticket_id.encode())

    async def flood(self, count: int) -> list[bytes]:
        """Many offers fast: one template payload under many distinct ticket ids."""
        template_ticket = self.signer.issue()
        offer = offer_for(template_ticket)
        payload = offer_codec().encode(offer)
        headers = offer_headers(offer)
        keys = []
        futures = []
        for i in range(count):
            key = f"flood{i:017d}".encode()
            keys.append(key)
            futures.append(await self.producer.send(self.settings.offers_topic, payload, key=key,
                                                    headers=headers))
            if len(futures) >= 5000:
                for f in futures:
                    await f
                futures.clear()
        for f in futures:
            await f
        return keys
