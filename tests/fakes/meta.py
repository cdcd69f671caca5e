"""A loopback stand-in for the WhatsApp Cloud API, and signed Meta webhooks for tests.

:class:`FakeMeta` answers ``POST /{version}/{phone-number-id}/messages`` like Graph does: 200 with
``{"messaging_product", "contacts", "messages": [{"id": "wamid..."}]}`` for a valid request, Graph
error objects otherwise, and whatever a test scripts with :meth:`FakeMeta.fail_next`. The helpers
below build the notifications Meta POSTs to a webhook, signed with ``X-Hub-Signature-256``, and the
GET subscription handshake, so that end-to-end tests can send them to a running daemon.

Every request is checked against Meta's OpenAPI document as it arrives. That document writes each
message type as ``allOf: [BaseMessageProperties, {additionalProperties: false, properties: {text,
type}}]``, which no valid message passes under JSON Schema (``additionalProperties`` in one branch
cannot see the other's properties); the kit's strict check merges each ``allOf`` into one object
schema first, which is what the document means (``pipecored.testing.strict_schema``).

The document also contradicts itself on files: its image, video and document messages refer to a
media object with nothing but ``id`` or ``link``, while its own request examples ("Send Document
Message by URL", "Send Video Message by URL", ...) send a ``caption`` and a document's
``filename``, and it declares the captioned media object (``MediaObject_1``) beside the bare one.
The fake checks against :func:`meta_document`: the document with exactly those examples' fields
on those three message types (``tests/plugins/test_templates_media.py`` holds it to every media
example the document gives, and to refusing a caption on audio).
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response

from pipecored.testing import OpenAPICheck, RecordedRequest, Reply, ScriptedFake, SignedWebhook
from tests.fakes.specs import load_spec

MESSAGES_PATH = re.compile(r"^/(?P<version>v\d+\.\d+)/(?P<phone_number_id>[^/]+)/messages$")

# Texts Graph answers with, for fail_next() calls that give only a code.
ERROR_MESSAGES: Mapping[int, tuple[str, str]] = {
    1: ("OAuthException", "An unknown error occurred"),
    2: ("OAuthException", "Service temporarily unavailable"),
    4: ("OAuthException", "(#4) Application request limit reached"),
    10: ("OAuthException", "(#10) Permission denied"),
    100: ("OAuthException", "(#100) Invalid parameter"),
    190: ("OAuthException", "Invalid OAuth access token - Cannot parse access token"),
    200: ("OAuthException", "(#200) Permissions error"),
    80007: ("OAuthException", "(#80007) Rate limit issues"),
    130429: ("OAuthException", "(#130429) Rate limit hit"),
    131026: ("OAuthException", "(#131026) Message undeliverable"),
    131047: ("OAuthException", "(#131047) Re-engagement message"),
    131056: (
        "OAuthException",
        "(#131056) (Business Account, Consumer Account) pair rate limit hit",
    ),
}


@dataclass(frozen=True)
class SentWhatsApp:
    """One message the fake accepted."""

    id: str
    api_version: str
    phone_number_id: str
    to: str
    body: str
    preview_url: bool | None
    payload: Mapping[str, Any]


def graph_error(
    code: int,
    *,
    message: str | None = None,
    error_type: str | None = None,
    subcode: int | None = None,
    is_transient: bool | None = None,
    details: str | None = None,
) -> dict[str, Any]:
    default_type, default_message = ERROR_MESSAGES.get(code, ("OAuthException", f"(#{code})"))
    error: dict[str, Any] = {
        "message": message if message is not None else default_message,
        "type": error_type or default_type,
        "code": code,
        "fbtrace_id": "A" + uuid.uuid4().hex[:22],
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    if is_transient is not None:
        error["is_transient"] = is_transient
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return {"error": error}


def error_reply(
    status: int,
    code: int,
    *,
    retry_after: float | str | None = None,
    **details: Any,
) -> Reply:
    """A Graph error answer (``details``: :func:`graph_error`'s keywords)."""
    headers = {"content-type": "application/json"}
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    body = json.dumps(graph_error(code, **details)).encode("utf-8")
    return Reply(status, body, headers, content_type=None)


def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(payload).encode("utf-8"),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


# A text message as Meta's document writes it (what the plugin sends, for checks of the check).
TEXT_MESSAGE: Mapping[str, Any] = {
    "messaging_product": "whatsapp",
    "recipient_type": "individual",
    "to": "34600111222",
    "type": "text",
    "text": {"body": "Hola", "preview_url": False},
}


# The media messages whose examples in Meta's document carry a caption (and, for a document, a
# filename) that the schema they refer to leaves out.
CAPTIONED_MESSAGES = {
    "ImageMessage": "image",
    "VideoMessage": "video",
    "DocumentMessage": "document",
}


def meta_document() -> dict[str, Any]:
    """Meta's document, with a caption on image, video and document messages and a filename on
    document messages, as the document's own examples send them (see the module docstring)."""
    document = copy.deepcopy(load_spec("meta"))
    schemas = document["components"]["schemas"]
    # the document's own captioned media object: id or link, with a caption of 1024 at most
    captioned = copy.deepcopy(schemas["MediaObject_1"])
    with_filename = copy.deepcopy(captioned)
    for branch in with_filename["oneOf"]:
        branch["properties"]["filename"] = {"type": "string", "description": "Media filename."}
    schemas["CaptionedMediaObject"] = captioned
    schemas["CaptionedDocumentObject"] = with_filename
    for message, kind in CAPTIONED_MESSAGES.items():
        name = "CaptionedDocumentObject" if kind == "document" else "CaptionedMediaObject"
        (own,) = [part for part in schemas[message]["allOf"] if "properties" in part]
        own["properties"][kind] = {"$ref": f"#/components/schemas/{name}"}
    return document


@functools.cache
def meta_check() -> OpenAPICheck:
    """The strict check of :func:`meta_document`, built once per process."""
    return OpenAPICheck(meta_document())


def new_message_id() -> str:
    return "wamid." + base64.b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes).decode("ascii")


class FakeMeta(ScriptedFake):
    """The WhatsApp Cloud API's send endpoint on 127.0.0.1.

    ``access_tokens`` maps each phone number id to the token it accepts; without it any bearer
    token is accepted.
    """

    def __init__(self, access_tokens: Mapping[str, str] | None = None) -> None:
        super().__init__(check=meta_check())
        self.access_tokens = dict(access_tokens or {})
        self.messages: list[SentWhatsApp] = []

    def reset(self) -> None:
        super().reset()
        self.messages.clear()

    def fail_next(
        self,
        *,
        status: int = 400,
        code: int = 131026,
        message: str | None = None,
        error_type: str | None = None,
        subcode: int | None = None,
        is_transient: bool | None = None,
        details: str | None = None,
        retry_after: float | str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests with a Graph error."""
        reply = error_reply(
            status,
            code,
            retry_after=retry_after,
            message=message,
            error_type=error_type,
            subcode=subcode,
            is_transient=is_transient,
            details=details,
        )
        self.script_next(reply, times=times)

    def default_answer(self, request: RecordedRequest) -> Response:
        match = MESSAGES_PATH.match(request.path)
        if request.method != "POST" or match is None:
            return _json(
                400,
                graph_error(
                    2500, message=f"Unknown path components: {request.path}", error_type=None
                ),
            )
        phone_number_id = match["phone_number_id"]
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("Bearer "):
            return _json(
                400,
                graph_error(
                    2500,
                    message="An active access token must be used to query information.",
                ),
            )
        expected = self.access_tokens.get(phone_number_id)
        if self.access_tokens and authorization[len("Bearer ") :] != expected:
            return _json(401, graph_error(190))
        try:
            payload = json.loads(request.body.decode("utf-8"))
        except ValueError:
            return _json(400, graph_error(100, message="(#100) Invalid JSON"))
        if not isinstance(payload, dict):
            return _json(400, graph_error(100))
        for name in ("messaging_product", "to", "type"):
            if not payload.get(name):
                return _json(
                    400, graph_error(100, message=f"(#100) The parameter {name} is required.")
                )
        kind = payload["type"]
        text = payload.get("text") if kind == "text" else {"body": ""}
        if kind == "text" and (not isinstance(text, dict) or not text.get("body")):
            return _json(400, graph_error(100, message="(#100) Param text['body'] is required."))
        if kind != "text" and not isinstance(payload.get(kind), dict):
            return _json(400, graph_error(100, message=f"(#100) Param {kind} is required."))
        assert isinstance(text, dict)
        message_id = new_message_id()
        self.messages.append(
            SentWhatsApp(
                id=message_id,
                api_version=match["version"],
                phone_number_id=phone_number_id,
                to=str(payload["to"]),
                body=str(text["body"]),
                preview_url=text.get("preview_url"),
                payload=payload,
            )
        )
        return _json(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": payload["to"], "wa_id": payload["to"]}],
                "messages": [{"id": message_id}],
            },
        )


def validate_meta_request(recorded: RecordedRequest) -> None:
    """Raise ``RequestViolation`` unless Meta's OpenAPI document allows ``recorded`` (with the
    captions and file names its own examples send: :func:`meta_document`)."""
    meta_check()(recorded)


# Webhooks Meta sends.


def hub_signature(body: bytes, app_secret: str) -> str:
    """``X-Hub-Signature-256`` for ``body``: Meta publishes no library, so this is the recipe."""
    return "sha256=" + hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signed_notification(
    url: str, app_secret: str, payload: Mapping[str, Any] | bytes
) -> SignedWebhook:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    return SignedWebhook(
        method="POST",
        url=url,
        headers={
            "content-type": "application/json",
            "x-hub-signature-256": hub_signature(body, app_secret),
        },
        body=body,
    )


def subscription_check(
    url: str, *, verify_token: str, challenge: str, mode: str = "subscribe"
) -> SignedWebhook:
    query = urlencode(
        {"hub.mode": mode, "hub.verify_token": verify_token, "hub.challenge": challenge}
    )
    return SignedWebhook(method="GET", url=f"{url}{'&' if '?' in url else '?'}{query}", headers={})


def status(
    message_id: str,
    state: str,
    *,
    recipient_id: str = "34600111222",
    timestamp: int | None = None,
    errors: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """One ``statuses[]`` item."""
    item: dict[str, Any] = {
        "id": message_id,
        "status": state,
        "timestamp": str(timestamp if timestamp is not None else int(time.time())),
        "recipient_id": recipient_id,
    }
    if state in ("sent", "delivered"):
        item["conversation"] = {
            "id": uuid.uuid4().hex,
            "origin": {"type": "service"},
        }
        item["pricing"] = {"billable": True, "pricing_model": "CBP", "category": "service"}
    if errors:
        item["errors"] = [dict(e) for e in errors]
    return item


def status_error(
    code: int, title: str, *, message: str | None = None, details: str | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "title": title, "message": message or title}
    if details is not None:
        error["error_data"] = {"details": details}
    return error


def inbound(
    sender: str,
    kind: str = "text",
    content: Mapping[str, Any] | None = None,
    *,
    body: str | None = None,
    message_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, Any]:
    """One ``messages[]`` item from the customer ``sender`` (digits, as Meta sends them)."""
    item: dict[str, Any] = {
        "from": sender,
        "id": message_id or new_message_id(),
        "timestamp": str(timestamp if timestamp is not None else int(time.time())),
        "type": kind,
    }
    if kind == "text":
        item["text"] = {"body": body if body is not None else ""}
    elif content is not None:
        item[kind] = dict(content)
    return item


def change(
    phone_number_id: str,
    *,
    display_phone_number: str = "15550001234",
    statuses: Iterable[Mapping[str, Any]] = (),
    messages: Iterable[Mapping[str, Any]] = (),
    field_name: str = "messages",
) -> dict[str, Any]:
    """One ``entry[].changes[]`` item for the business number ``phone_number_id``."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": display_phone_number,
            "phone_number_id": phone_number_id,
        },
    }
    statuses = [dict(s) for s in statuses]
    messages = [dict(m) for m in messages]
    if statuses:
        value["statuses"] = statuses
    if messages:
        value["messages"] = messages
        value["contacts"] = [{"profile": {"name": "Cliente"}, "wa_id": m["from"]} for m in messages]
    return {"field": field_name, "value": value}


def notification(
    *entries: Sequence[Mapping[str, Any]], waba_id: str = "102290129340398"
) -> dict[str, Any]:
    """A whole notification: one ``entry`` per sequence of changes."""
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [dict(c) for c in changes]} for changes in entries],
    }
