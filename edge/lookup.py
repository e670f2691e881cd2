"""Answering an offer lookup, independent of the web framework.

Both the Starlette route (with ``?wait`` and the event stream) and the plain
ASGI fast path (``edge/fast_path.py``) use these functions, so the rules
(ticket first, then storage; expired never served; Avro rendered once) live
in one place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson
from prometheus_client import Histogram

from edge.render import Refused, Renderer
from edge.store import OfferStore, StoreDamaged, StoredOffer
from runtime.clock import now_us
from schemas.tickets import Ticket, TicketError, TicketSigner

log = logging.getLogger(__name__)


class Answer(NamedTuple):
    """Status, JSON body and the headers particular to this answer."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def json_answer(status: int, body: Any, *headers: tuple[str, str]) -> Answer:
    """An answer whose body is ``body`` as JSON."""
    return Answer(status, orjson.dumps(body), headers)


class Lookups:
    """Offer lookups against one node's store, timed into its lookup histogram.

    ``lookup_seconds`` is the histogram labelled by region and outcome
    (``found``, ``pending``, ``rejected``); ``store`` is the node's open store;
    ``renderer`` checks an entry stored unchecked before it is served.
    """

    def __init__(self, signer: TicketSigner, store: OfferStore, lookup_seconds: Histogram,
                 region: str, renderer: Renderer,
                 on_refused: Callable[[str], None] = lambda why: None,
                 on_damaged: Callable[[Exception], Answer] | None = None) -> None:
        self.signer = signer
        self.store = store
        self.renderer = renderer
        self.on_refused = on_refused
        self.on_damaged = on_damaged
        self.observe_found = lookup_seconds.labels(region, "found").observe
        self.observe_pending = lookup_seconds.labels(region, "pending").observe
        self.observe_rejected = lookup_seconds.labels(region, "rejected").observe

    def verify(self, token: str, started: float) -> Ticket | Answer:
        """The ticket, or the 400/401/410 answer; storage is not touched."""
        try:
            return self.signer.verify(token)
        except TicketError as exc:
            self.observe_rejected(time.perf_counter() - started)
            return json_answer(exc.status_code, {"status": "rejected", "error": str(exc)})

    def render(self, key: bytes, stored: StoredOffer) -> bytes:
        """The offer's JSON; an Avro entry is checked and rendered once and kept as JSON.

        Raises Refused (deleted here: a node that checked it on arrival would
        never have stored it).
        """
        try:
            body = self.renderer.json(key, stored)
        except Refused as exc:
            log.warning("stored offer %s refused at first read and deleted: %s",
                        key.decode(errors="replace"), exc)
            self.store.delete(key)
            self.on_refused(str(exc))
            raise
        if not stored.is_json:
            self.store.replace_with_json(key, stored, body)
        return body

    def answer(self, ticket: Ticket, stored: StoredOffer | None, started: float) -> Answer:
        """200 with the offer, 410 revoked, or 404 pending (absent, expired, or a stored entry
        that cannot be served: deleted, as a node that checked it on arrival never stored
        it). Never a 5xx from the store's content."""
        if stored is not None and stored.revoked:
            self.observe_rejected(time.perf_counter() - started)
            return json_answer(410, {"status": "revoked", "ticket_id": ticket.ticket_id,
                                     "error": "the offer was revoked"})
        if stored is None or stored.expires_at <= now_us():
            self.observe_pending(time.perf_counter() - started)
            return json_answer(404, {"status": "pending", "ticket_id": ticket.ticket_id,
                                     "expires_at": ticket.expires_at_us})
        try:
            body = self.render(ticket.ticket_id.encode(), stored)
        except Refused:
            self.observe_pending(time.perf_counter() - started)
            return json_answer(404, {"status": "pending", "ticket_id": ticket.ticket_id,
                                     "expires_at": ticket.expires_at_us})
        elapsed = time.perf_counter() - started
        since_apply_ms = max(0, now_us() - stored.applied_at) / 1000
        self.observe_found(elapsed)
        return Answer(200, body, (
            ("server-timing", f"lookup;dur={elapsed * 1000:.3f}, since-apply;dur={since_apply_ms:.3f}"),
            ("x-offer-applied-at", str(stored.applied_at)),
        ))

    def now(self, token: str) -> Answer:
        """A lookup that does not wait."""
        started = time.perf_counter()
        ticket = self.verify(token, started)
        if isinstance(ticket, Answer):
            return ticket
        try:
            stored = self.store.get(ticket.ticket_id.encode())
        except StoreDamaged as exc:
            if self.on_damaged is None:
                raise
            return self.on_damaged(exc)
        return self.answer(ticket, stored, started)
