"""Which browser origins may read offers: one rule for every edge response path."""

from __future__ import annotations

from collections.abc import Iterable


class CorsPolicy:
    def __init__(self, allowed_origins: Iterable[str]) -> None:
        allowed = set(allowed_origins)
        self.any_origin = "*" in allowed
        self.origins = {o.encode() for o in allowed}

    def headers(self, raw_request_headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The CORS response headers for a request (ASGI header pairs in, and out)."""
        for name, value in raw_request_headers:
            if name == b"origin" and (self.any_origin or value in self.origins):
                return [(b"access-control-allow-origin", value), (b"vary", b"Origin")]
        return []
