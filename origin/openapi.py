"""The OpenAPI 3.1 description of the origin's API, served at ``/openapi.json``.

Every rule it states about a request (the user id, the body limit, the
Idempotency-Key) is built from the constants the validation uses
(engine/validation.py, origin/requests.py), so the two cannot disagree.
"""

from __future__ import annotations

from typing import Any

from engine.validation import USER_ID_MAX_LENGTH, USER_ID_PATTERN, USER_ID_RULE
from origin.regions import REGION_COOKIE
from origin.requests import (
    IDEMPOTENCY_KEY_PATTERN,
    IDEMPOTENCY_KEY_RULE,
    MAX_BODY_BYTES,
    MAX_IDEMPOTENCY_KEY_LEN,
)

IDEMPOTENCY_KEY_SCHEMA_PATTERN = f'^(?:"{IDEMPOTENCY_KEY_PATTERN}"|{IDEMPOTENCY_KEY_PATTERN})$'

_LOGIN_BODY = {
    "type": "object",
    "required": ["user_id"],
    "additionalProperties": False,
    "properties": {
        "user_id": {"type": "string", "minLength": 1, "maxLength": USER_ID_MAX_LENGTH,
                    "pattern": f"^{USER_ID_PATTERN}$", "description": USER_ID_RULE},
        "ip": {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
               "description": "IPv4 or IPv6 (no zone id); defaults to the client address"},
    },
}
_ERROR = {"type": "object", "required": ["error"],
          "properties": {"error": {"type": "string"}, "field": {"type": "string"}}}
_JSON_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_LOGIN_REQUEST_BODY = {
    "required": True,
    "description": f"A JSON object of at most {MAX_BODY_BYTES} bytes (UTF-8)",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LoginRequest"}}}}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "content-positioning origin", "version": "1"},
        "paths": {
            "/login": {"post": {
                "summary": "Log a user in; the offer is positioned at the edges",
                "parameters": [{
                    "name": "Idempotency-Key", "in": "header", "required": False,
                    "description": (
                        "Makes retries safe (IETF draft-ietf-httpapi-idempotency-key-header): "
                        "the same key for the same user within the ticket TTL gets the same "
                        "ticket id and counts one visit, whether the first attempt got 202, "
                        "503 or no answer. A structured-field string (\"...\") or bare, "
                        f"{IDEMPOTENCY_KEY_RULE}."),
                    "schema": {"type": "string", "maxLength": MAX_IDEMPOTENCY_KEY_LEN + 2,
                               "pattern": IDEMPOTENCY_KEY_SCHEMA_PATTERN}}],
                "requestBody": _LOGIN_REQUEST_BODY,
                "responses": {
                    "202": {"description": "Accepted by Kafka (acks=all); fetch the offer at an edge",
                            "headers": {"Set-Cookie": {
                                "description": f"`{REGION_COOKIE}=<region>; Path=/offers; "
                                               "SameSite=Lax; HttpOnly`: the front door "
                                               "routes the browser's offer lookups by it",
                                "schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": {
                                "$ref": "#/components/schemas/LoginAccepted"}}}},
                    "400": {"description": "Body is not a JSON object, or a malformed "
                                           "Idempotency-Key", "content": _JSON_ERROR},
                    "413": {"description": f"Body over {MAX_BODY_BYTES} bytes",
                            "content": _JSON_ERROR},
                    "415": {"description": "Content-Type is not application/json",
                            "content": _JSON_ERROR},
                    "422": {"description": "A field is invalid; `field` names it",
                            "content": _JSON_ERROR},
                    "503": {"description": ("Kafka did not acknowledge in time; see Retry-After. "
                                            "The login may still be processed: retry with "
                                            "the same Idempotency-Key"),
                            "content": _JSON_ERROR},
                }}},
            "/offers/sync": {"post": {
                "summary": "Compute the offer inside the request (the baseline)",
                "requestBody": _LOGIN_REQUEST_BODY,
                "responses": {
                    "200": {"description": "The offer", "content": {"application/json": {
                        "schema": {"type": "object"}}}},
                    "400": {"description": "Bad body", "content": _JSON_ERROR},
                    "413": {"description": f"Body over {MAX_BODY_BYTES} bytes",
                            "content": _JSON_ERROR},
                    "415": {"description": "Content-Type is not application/json",
                            "content": _JSON_ERROR},
                    "422": {"description": "A field is invalid", "content": _JSON_ERROR},
                }}},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "Connected to Kafka",
                                "responses": {"200": {"description": "ready"},
                                              "503": {"description": "not yet"}}}},
        },
        "components": {"schemas": {
            "LoginRequest": _LOGIN_BODY,
            "LoginAccepted": {"type": "object",
                              "required": ["ticket", "ticket_id", "expires_at", "region"],
                              "properties": {
                                  "ticket": {"type": "string"},
                                  "ticket_id": {"type": "string"},
                                  "expires_at": {"type": "integer",
                                                 "description": "µs since the Unix epoch"},
                                  "login_accepted_at": {"type": "integer"},
                                  "region": {"type": "string", "description": (
                                      "the edge region serving this user (IP country → "
                                      "market region → a configured edge); also set as "
                                      f"the `{REGION_COOKIE}` cookie (Path=/offers), by "
                                      "which the front door routes offer lookups")}}},
            "Error": _ERROR,
        }},
    }
