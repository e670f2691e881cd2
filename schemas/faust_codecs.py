"""The Avro codecs registered with Faust, so topics can name them as serializers.

Kept apart from ``schemas.codec`` so that the origin and the edge never import
Faust. ``register()`` is idempotent.
"""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs

from schemas.codec import AvroCodec, login_codec, offer_codec

LOGIN_EVENT = "avro-login-event"
OFFER = "avro-offer"


class FaustAvroCodec(codecs.Codec):
    """A Faust codec that writes and reads single-object encoded Avro."""

    def __init__(self, avro: AvroCodec, **kwargs: Any) -> None:
        self.avro = avro
        super().__init__(**kwargs)

    def _dumps(self, obj: Any) -> bytes:
        return self.avro.encode(obj)

    def _loads(self, s: bytes) -> Any:
        return self.avro.decode(s)


def register() -> None:
    codecs.register(LOGIN_EVENT, FaustAvroCodec(login_codec()))
    codecs.register(OFFER, FaustAvroCodec(offer_codec()))
