"""The worker's side of signed offers: each batch's ``offers`` records signed together.

``BatchSigning.sign`` takes a batch's records in the order they will be
produced and returns them with signature headers on every record of the
offers topic (schemas/offer_signatures.py): one Ed25519 signature per batch,
with the key the signing file names for now (runtime/offer_keys.py). The
signed expiry and login time are read back from the records' own headers,
so what is signed is what the edges read. Other records (dead letters) pass
unchanged. Each batch's tree keeps the records bound for one partition side by
side (their partition as Kafka's default partitioner picks it, from
``partitions``), which makes an edge's check of them cheaper; a wrong count
costs speed, never correctness.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiokafka.partitioner import murmur2

from pipeline.records import OutRecord
from runtime.clock import now_us
from runtime.offer_keys import SigningKeyring
from schemas.events import EXPIRES_AT_HEADER, LOGIN_ACCEPTED_AT_HEADER
from schemas.offer_signatures import OfferSigner, SignedFields

log = logging.getLogger(__name__)


class BatchSigning:
    """Signs the ``topic`` records of each batch with the keyring's current key."""

    def __init__(self, topic: str, keyring: SigningKeyring, partitions: int) -> None:
        self.topic = topic
        self.keyring = keyring
        self.partitions = partitions
        self._signer: OfferSigner | None = None

    def _current(self) -> OfferSigner:
        key = self.keyring.current(now_us())
        if self._signer is None or self._signer.kid != key.kid:
            log.info("signing offers with key %s", key.kid)
            self._signer = OfferSigner(self.topic, key.kid, key.private_key())
        return self._signer

    def sign(self, records: Sequence[OutRecord]) -> list[OutRecord]:
        """``records`` with the offers among them signed, in the same order.

        Raises OfferKeyError: no key may sign (the signing file became unusable
        before any good read).
        """
        at = [i for i, r in enumerate(records) if r.topic == self.topic]
        if not at:
            return list(records)
        fields = [_fields(records[i]) for i in at]
        groups = [(murmur2(f.key) & 0x7FFFFFFF) % self.partitions for f in fields]
        out = list(records)
        for i, extra in zip(at, self._current().sign(fields, groups), strict=True):
            record = out[i]
            out[i] = record._replace(headers=[*(record.headers or ()), *extra])
        return out


def _fields(record: OutRecord) -> SignedFields:
    expires_at = accepted_at = 0
    for name, raw in record.headers or ():
        if name == EXPIRES_AT_HEADER:
            expires_at = int(raw)
        elif name == LOGIN_ACCEPTED_AT_HEADER:
            accepted_at = int(raw)
    return SignedFields(record.key, record.value, expires_at, accepted_at)
