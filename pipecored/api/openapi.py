"""GET /openapi.json: an OpenAPI 3.1 document of every route, kept true by tests.

Request bodies come from the same pydantic models that validate them; responses are described
here once.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from pipecored import __version__
from pipecored.api.context import gateway_of
from pipecored.api.responses import JSONResponse
from pipecored.api.shapes import response_schemas
from pipecored.channels import STANDARD_CHANNELS, ChannelSet
from pipecored.config.model import TENANT_ID_PATTERN
from pipecored.send_body import body_schema
from pipecored.service import ProviderSwitch, SuppressionBody
from pipecored.store.base import DIRECTIONS, MESSAGE_STATUSES

REF = "#/components/schemas/{model}"

_NULLABLE_STRING = {"type": ["string", "null"]}

_STATUSES = list(MESSAGE_STATUSES)
_DIRECTIONS = list(DIRECTIONS)


def _tenant_id_properties() -> dict[str, Any]:
    # the document's patterns are ECMA-262: \Z (end of text, not before a newline) is $ there
    tenant = {"type": "string", "pattern": TENANT_ID_PATTERN.pattern.replace("\\Z", "$")}
    return {"tenant_id": tenant, "tenantId": tenant}


def _with_tenant_id(schema: dict[str, Any], *, tenant_required: bool = False) -> dict[str, Any]:
    schema.pop("title", None)
    schema["properties"] = {**schema["properties"], **_tenant_id_properties()}
    if tenant_required:
        schema["anyOf"] = [{"required": ["tenant_id"]}, {"required": ["tenantId"]}]
    return schema


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_AUTH_ERRORS = {
    "401": _error("No key, a malformed Authorization header, or an unknown key"),
    "403": _error("The key may not act for that tenant"),
    "429": _error(
        "Over the tenant's API rate limit, or too many wrong keys from this address (Retry-After)"
    ),
}
_PATH_TENANT = {
    "name": "tenant_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}
_PATH_MESSAGE = {"name": "message_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _path_channel(channels: list[str]) -> dict[str, Any]:
    return {
        "name": "channel",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": channels},
    }


_BODY_ERRORS = {
    "400": _error("The body is not valid JSON"),
    "413": _error("The body is over the size limit"),
    "415": _error("The body is not JSON"),
    "422": _error("A field is missing or invalid; the message names it"),
}


def _ref(model: str) -> dict[str, str]:
    return {"$ref": REF.format(model=model)}


def _schemas(channels: ChannelSet) -> dict[str, Any]:
    names = list(channels.names)
    sends: dict[str, Any] = {}
    for name in names:
        schema = body_schema(channels[name], ref_template=REF)
        sends.update(schema.pop("$defs", {}))  # the shapes a send nests: templates, media, ...
        sends[_send_schema_name(name)] = _with_tenant_id(schema)
    return {
        **sends,
        "ConfigProvider": _config_provider_schema(names),
        "SuppressionAdd": _suppression_add_schema(names),
        **response_schemas(REF, names),
    }


def _send_schema_name(channel: str) -> str:
    """``sms`` -> ``SmsSend``, ``push_web`` -> ``PushWebSend``."""
    return "".join(part.capitalize() for part in channel.split("_")) + "Send"


def _config_provider_schema(channels: list[str]) -> dict[str, Any]:
    schema = ProviderSwitch.model_json_schema(by_alias=True)
    schema["properties"]["channel"]["enum"] = channels
    return _with_tenant_id(schema, tenant_required=True)


_DOCUMENTS: dict[int, tuple[ChannelSet, dict[str, Any]]] = {}


def _suppression_add_schema(channels: list[str]) -> dict[str, Any]:
    schema = SuppressionBody.model_json_schema(by_alias=True)
    schema["properties"]["channel"]["enum"] = channels
    schema.pop("title", None)
    for prop in schema["properties"].values():
        prop.pop("title", None)
    return schema


_LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": 500},
}


def document(channels: ChannelSet | None = None) -> dict[str, Any]:
    """The document for a daemon with these channels (the standard ones by default), built once
    per channel set."""
    if channels is None:
        channels = ChannelSet({c.name: c for c in STANDARD_CHANNELS})
    cached = _DOCUMENTS.get(id(channels))
    if cached is None or cached[0] is not channels:
        if len(_DOCUMENTS) >= 8:  # daemons in one process (tests): keep only recent ones
            _DOCUMENTS.clear()
        cached = (channels, _document(channels))
        _DOCUMENTS[id(channels)] = cached
    return cached[1]


def _document(channels: ChannelSet) -> dict[str, Any]:
    names = list(channels.names)
    secured: list[dict[str, list[str]]] = [{"bearer": []}]
    paths: dict[str, Any] = {
        "/messaging/send/{channel}": {
            "post": {
                "summary": "Accept a message for delivery",
                "security": secured,
                "parameters": [
                    _path_channel(names),
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            # anyOf, not oneOf: an SMS body is also a valid WhatsApp body
                            # (the channel in the path says which one it is).
                            "schema": {"anyOf": [_ref(_send_schema_name(c)) for c in names]}
                        }
                    },
                },
                "responses": {
                    "202": _json("Stored durably and queued", _ref("Accepted")),
                    **_BODY_ERRORS,
                    **_AUTH_ERRORS,
                    "404": _error("Unknown tenant, channel, or channel not configured"),
                    "409": _error("Channel inactive, tenant config invalid, idempotency conflict"),
                    "503": _error("Store unavailable or shutting down (Retry-After)"),
                },
            }
        },
        "/messaging/messages/{message_id}": {
            "get": {
                "summary": "One message with its attempts",
                "security": secured,
                "parameters": [_PATH_MESSAGE],
                "responses": {
                    "200": _json("The message", _ref("Message")),
                    **_AUTH_ERRORS,
                    "404": _error("No such message for this key"),
                    "503": _error("Store unavailable"),
                },
            }
        },
        "/messaging/messages/{message_id}/retry": {
            "post": {
                "summary": "Queue a failed message again",
                "security": secured,
                "parameters": [_PATH_MESSAGE],
                "responses": {
                    "202": _json("Queued again", _ref("Message")),
                    **_AUTH_ERRORS,
                    "404": _error("No such message for this key"),
                    "409": _error("The message is not failed"),
                    "503": _error("Store unavailable"),
                },
            }
        },
        "/messaging/messages/{message_id}/cancel": {
            "post": {
                "summary": "Cancel a scheduled or queued message: it is never sent",
                "security": secured,
                "parameters": [_PATH_MESSAGE],
                "responses": {
                    "200": _json("Canceled", _ref("Message")),
                    **_AUTH_ERRORS,
                    "404": _error("No such message for this key"),
                    "409": _error("The message is on its way or done (not_cancelable)"),
                    "503": _error("Store unavailable"),
                },
            }
        },
        "/messaging/config/provider": {
            "post": {
                "summary": "Set a tenant's provider for a channel (admin)",
                "security": secured,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ConfigProvider")}},
                },
                "responses": {
                    "200": _json("Updated; secrets masked", _ref("TenantConfig")),
                    "201": _json("Tenant created; secrets masked", _ref("TenantConfig")),
                    **_BODY_ERRORS,
                    **_AUTH_ERRORS,
                    "409": _error("The tenant's file is not YAML the API can edit; fix it by hand"),
                },
            }
        },
        "/messaging/config/{tenant_id}": {
            "get": {
                "summary": "A tenant's channels, secrets masked",
                "security": secured,
                "parameters": [_PATH_TENANT],
                "responses": {
                    "200": _json("The tenant's configuration", _ref("TenantConfig")),
                    **_AUTH_ERRORS,
                    "404": _error("Unknown tenant"),
                },
            }
        },
        "/messaging/logs/{tenant_id}": {
            "get": {
                "summary": "A tenant's messages, newest first",
                "security": secured,
                "parameters": [
                    _PATH_TENANT,
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "channel",
                        "in": "query",
                        "schema": {"type": "string", "enum": names},
                    },
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": _STATUSES},
                    },
                    {
                        "name": "direction",
                        "in": "query",
                        "schema": {"type": "string", "enum": _DIRECTIONS},
                    },
                ],
                "responses": {
                    "200": _json(
                        "A page of messages",
                        {
                            "type": "object",
                            "required": ["items", "nextCursor"],
                            "properties": {
                                "items": {"type": "array", "items": _ref("LogItem")},
                                "nextCursor": _NULLABLE_STRING,
                            },
                        },
                    ),
                    **_AUTH_ERRORS,
                    "404": _error("Unknown tenant"),
                    "422": _error("A query parameter is invalid"),
                    "503": _error("Store unavailable"),
                },
            }
        },
        "/messaging/stats/{tenant_id}": {
            "get": {
                "summary": "A tenant's counts, delivery rate and latency",
                "security": secured,
                "parameters": [
                    _PATH_TENANT,
                    {
                        "name": "since",
                        "in": "query",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                ],
                "responses": {
                    "200": _json("Statistics", _ref("Stats")),
                    **_AUTH_ERRORS,
                    "404": _error("Unknown tenant"),
                    "422": _error("since is not ISO 8601"),
                    "503": _error("Store unavailable"),
                },
            }
        },
        "/messaging/webhook/{channel}": {
            "parameters": [
                _path_channel(names),
                {
                    "name": "tenant_id",
                    "in": "query",
                    "required": True,
                    # An empty tenant_id is as missing as none: 422.
                    "schema": {"type": "string", "minLength": 1},
                },
                {"name": "provider", "in": "query", "schema": {"type": "string"}},
            ],
            "post": {
                "summary": "A provider's delivery status or inbound message (signed)",
                "requestBody": {
                    "content": {
                        "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                        "application/json": {},
                    }
                },
                "responses": {
                    "200": {"description": "Applied; the body is what the provider expects"},
                    "204": {"description": "Applied"},
                    "400": _error("Signed, but not a payload this provider sends"),
                    "403": _error("The signature does not verify; nothing applied"),
                    "404": _error("Unknown tenant, channel or provider"),
                    "413": _error("Body over the size limit"),
                    "422": _error("tenant_id missing"),
                    "503": _error("Store unavailable; the provider should retry"),
                },
            },
            "get": {
                "summary": "Meta's subscription check: echoes hub.challenge",
                "parameters": [
                    {"name": "hub.mode", "in": "query", "schema": {"type": "string"}},
                    {"name": "hub.verify_token", "in": "query", "schema": {"type": "string"}},
                    {"name": "hub.challenge", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "The challenge",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "403": _error("The verify token does not match"),
                    "404": _error("Unknown tenant, channel, or a provider without webhooks"),
                    "422": _error("tenant_id missing"),
                },
            },
        },
        "/messaging/events/{tenant_id}": {
            "get": {
                "summary": "A tenant's events oldest first, with their delivery to each endpoint",
                "description": "The events its webhook endpoints receive (SPEC section 8), kept"
                " whether or not it has any endpoint, so that a platform can also catch up by"
                " polling: ask again with nextCursor for what came after.",
                "security": secured,
                "parameters": [
                    _PATH_TENANT,
                    {"name": "after", "in": "query", "schema": {"type": "string"}},
                    _LIMIT,
                ],
                "responses": {
                    "200": _json("A page of events", _ref("EventPage")),
                    **_AUTH_ERRORS,
                    "404": _error("Unknown tenant"),
                    "422": _error("A query parameter is invalid"),
                    "503": _error("Store unavailable"),
                },
            }
        },
        "/messaging/experiments/{tenant_id}": {
            "get": {
                "summary": "A tenant's provider experiments: each arm's results, and whether"
                " their delivery rates differ",
                "security": secured,
                "parameters": [_PATH_TENANT],
                "responses": {
                    "200": _json("The tenant's experiments", _ref("Experiments")),
                    **_AUTH_ERRORS,
                    "404": _error("Unknown tenant"),
                    "409": _error("The tenant has no valid configuration"),
                    "503": _error("Store unavailable"),
                },
            }
        },
        "/messaging/suppressions/{tenant_id}": {
            "get": {
                "summary": "A tenant's suppressed addresses, oldest first",
                "security": secured,
                "parameters": [
                    _PATH_TENANT,
                    {"name": "channel", "in": "query", "schema": {"type": "string", "enum": names}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    _LIMIT,
                ],
                "responses": {
                    "200": _json("A page of suppressions", _ref("SuppressionPage")),
                    **_AUTH_ERRORS,
                    "404": _error("Unknown tenant or channel"),
                    "422": _error("A query parameter is invalid"),
                    "503": _error("Store unavailable"),
                },
            },
            "post": {
                "summary": "Suppress an address: sends to it are refused (recipient_suppressed)",
                "security": secured,
                "parameters": [_PATH_TENANT],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("SuppressionAdd")}},
                },
                "responses": {
                    "201": _json("Added", _ref("Suppressed")),
                    "200": _json(
                        "Already on the list (its first reason is kept)", _ref("Suppressed")
                    ),
                    **_AUTH_ERRORS,
                    "400": _error("The body is not JSON"),
                    "413": _error("Body over the size limit"),
                    "415": _error("Not application/json"),
                    "404": _error("Unknown tenant"),
                    "422": _error("A field is missing or invalid (named)"),
                    "503": _error("Store unavailable"),
                },
            },
        },
        "/messaging/suppressions/{tenant_id}/{channel}/{address}": {
            "delete": {
                "summary": "Lift a suppression",
                "security": secured,
                "parameters": [
                    _PATH_TENANT,
                    _path_channel(names),
                    {
                        "name": "address",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "204": {"description": "Lifted"},
                    **_AUTH_ERRORS,
                    "404": _error("Unknown tenant or channel, or the address is not on the list"),
                    "422": _error("The address is not one of the channel's"),
                    "503": _error("Store unavailable"),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "responses": {"200": _json("Alive", {"type": "object"})},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: configuration loaded and store reachable",
                "responses": {
                    "200": _json("Ready", {"type": "object"}),
                    "503": _json("Not ready", {"type": "object"}),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _json("OpenAPI 3.1", {"type": "object"})},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pipecored",
            "version": __version__,
            "description": "Multi-tenant messaging gateway: WhatsApp, email and SMS.",
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(channels),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(document(gateway_of(request).channels))
