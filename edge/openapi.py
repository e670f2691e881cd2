"""The OpenAPI 3.1 description of the edge's API, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from schemas.tickets import TICKET_PATTERN

_TICKET = {"name": "ticket", "in": "path", "required": True,
           "description": "The ticket from the origin's 202: <kid>.<payload>.<mac>, base64url",
           "schema": {"type": "string", "pattern": f"^{TICKET_PATTERN}$"}}
_STATUS = {"type": "object", "required": ["status"],
           "properties": {"status": {"type": "string"}, "error": {"type": "string"},
                          "ticket_id": {"type": "string"}, "expires_at": {"type": "integer"}}}
_JSON_STATUS = {"application/json": {"schema": _STATUS}}
_OFFSETS = {"type": "object", "additionalProperties": {"type": "integer"},
            "description": "Per partition (the key)"}
_READINESS = {"application/json": {"schema": {
    "type": "object", "required": ["ready", "region", "caught_up_after_s",
                                   "applied_during_catch_up"],
    "properties": {
        "ready": {"type": "boolean"},
        "region": {"type": "string"},
        "lag": {**_OFFSETS, "description": "Records behind the high watermark, per partition"},
        "resumed_from": {**_OFFSETS, "description": "Offsets the node resumed from, per partition"},
        "applied_since_start": {"type": "integer"},
        "caught_up_after_s": {
            "type": ["number", "null"],
            "description": "Seconds from connecting to Kafka to caught up; null until then"},
        "applied_during_catch_up": {
            "type": ["integer", "null"],
            "description": "Records applied by the time it caught up; null until then"},
        "all_served_as_json": {"type": "boolean"},
    }}}}
_LOOKUP_ANSWERS = {
    "200": {"description": "The offer", "content": {"application/json": {
        "schema": {"type": "object"}}}},
    "400": {"description": "Malformed ticket or query", "content": _JSON_STATUS},
    "401": {"description": "Forged ticket (or a lifetime beyond the TTL, or issued in the future)",
            "content": _JSON_STATUS},
    "404": {"description": "Valid ticket, offer not positioned yet (`status: pending`)",
            "content": _JSON_STATUS},
    "410": {"description": "Expired ticket, or revoked offer (`status: revoked`)",
            "content": _JSON_STATUS},
    "502": {"description": "The stored offer is corrupt", "content": _JSON_STATUS},
    "503": {"description": "Too many waiting requests; see Retry-After", "content": _JSON_STATUS},
}


def edge_openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "content-positioning edge", "version": "1"},
        "paths": {
            "/offers/{ticket}": {"get": {
                "summary": "The offer for a ticket, from this node's store",
                "parameters": [_TICKET, {
                    "name": "wait", "in": "query", "required": False,
                    "description": "Seconds to hold the request until the offer arrives "
                                   "(capped by POSITIONING_EDGE_MAX_WAIT_S and the ticket's expiry)",
                    "schema": {"type": "string", "pattern": "^[0-9]{1,9}(\\.[0-9]{1,6})?$"}}],
                "responses": _LOOKUP_ANSWERS}},
            "/offers/{ticket}/events": {"get": {
                "summary": "Server-sent events: the offer as soon as it is positioned",
                "parameters": [_TICKET],
                "responses": {**{k: v for k, v in _LOOKUP_ANSWERS.items() if k != "200"},
                              "200": {"description": "An event stream",
                                      "content": {"text/event-stream": {
                                          "schema": {"type": "string"}}}}}}},
            "/healthz": {"get": {"summary": "Liveness",
                                 "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "Caught up with the offers topic",
                                "responses": {"200": {"description": "ready",
                                                      "content": _READINESS},
                                              "503": {"description": "catching up",
                                                      "content": _READINESS}}}},
        },  # /metrics is on the operators' listener, not this API (docs/http-api.md)
    }
