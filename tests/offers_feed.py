"""Test helper: writes offers straight onto the offers topic, as the worker would."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

from pipeline.engine.offers import compute_offer
from pipeline.engine.state import new_user_view
from pipeline.tickets import Ticket, TicketSigner
from positioning.settings import Settings
from schemas.codec import offer_codec


def offer_for(ticket: Ticket, user_id: str = "edge-user", ip: str = "81.2.69.160") -> dict[str, Any]:
    login = {"ticket_id": ticket.ticket_id, "user_id": user_id, "ip": ip, "user_agent": None,
             "login_accepted_at": ticket.issued_at_us, "expires_at": ticket.expires_at_us}
    return compute_offer(login, new_user_view(), created_at=ticket.issued_at_us + 1)


def headers_for(offer: dict[str, Any]) -> list[tuple[str, bytes]]:
    return [("expires_at", str(offer["expires_at"]).encode()),
            ("login_accepted_at", str(offer["login_accepted_at"]).encode())]


class OfferFeed:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.signer = TicketSigner.from_spec(settings.ticket_secret, settings.ticket_ttl_s)
        self.producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
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
                                          key=ticket.ticket_id.encode(), headers=headers_for(offer))
        return ticket, offer

    async def tombstone(self, ticket: Ticket) -> None:
        await self.producer.send_and_wait(self.settings.offers_topic, None,
                                          key=ticket.ticket_id.encode())

    async def flood(self, count: int) -> list[bytes]:
        """Many offers fast: one template payload under many distinct ticket ids."""
        template_ticket = self.signer.issue()
        offer = offer_for(template_ticket)
        payload = offer_codec().encode(offer)
        headers = headers_for(offer)
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
