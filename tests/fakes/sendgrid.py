"""A loopback stand-in for SendGrid's Mail Send API, and signed SendGrid event webhooks.

``FakeSendGrid`` answers ``POST /v3/mail/send`` as SendGrid does: ``202`` with an empty body and
the message id in ``X-Message-Id``; 401 for a missing or wrong key. Tests script failures with
``fail_next``. ``EventWebhookSigner`` holds a P-256 key pair and signs event batches the way
SendGrid does (ECDSA/SHA-256 over timestamp + raw body, base64 DER); ``event`` builds one event.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.responses import Response

from pipecored.testing import RecordedRequest, Reply, ScriptedFake
from tests.fakes.specs import provider_check

ERROR_MESSAGES = {
    400: "Bad Request",
    401: "The provided authorization grant is invalid, expired, or revoked",
    403: "The from address does not match a verified Sender Identity.",
    413: "content too large",
    429: "too many requests",
    500: "internal server error",
}


def error_body(*errors: tuple[str, str | None]) -> bytes:
    """SendGrid's ``{"errors": [{"message", "field", "help"}]}`` for ``(message, field)`` pairs."""
    return json.dumps(
        {"errors": [{"message": m, "field": f, "help": None} for m, f in errors]}
    ).encode()


def new_message_id() -> str:
    """An id shaped like SendGrid's ``X-Message-Id``: 22 URL-safe base64 characters."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")


class FakeSendGrid(ScriptedFake):
    """SendGrid's ``/v3/mail/send`` on 127.0.0.1. ``messages`` lists the accepted sends (parsed
    JSON plus ``x_message_id``), ``requests`` every request that arrived, each checked against
    SendGrid's OpenAPI document as it arrived."""

    def __init__(self, *, api_key: str | None = None) -> None:
        super().__init__(check=provider_check("sendgrid"))
        self.api_key = api_key
        self.messages: list[dict[str, Any]] = []

    def reset(self) -> None:
        super().reset()
        self.messages.clear()

    def fail_next(
        self,
        status: int = 429,
        *,
        message: str | None = None,
        field: str | None = None,
        errors: list[tuple[str, str | None]] | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = "application/json",
        delay: float = 0.0,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests with ``status`` (an error in SendGrid's shape unless
        ``body`` is given; any status works, e.g. a 202 without ``X-Message-Id``).

        ``retry_after`` sets ``X-RateLimit-Reset`` that many seconds ahead, as SendGrid does with
        a 429; pass ``headers={"Retry-After": ...}`` for the standard header.
        """
        reply_headers = dict(headers or {})
        if retry_after is not None:
            reply_headers["X-RateLimit-Limit"] = "600"
            reply_headers["X-RateLimit-Remaining"] = "0"
            reply_headers["X-RateLimit-Reset"] = str(int(time.time() + retry_after))
        if body is None:
            pairs = errors or [(message or ERROR_MESSAGES.get(status, "error"), field)]
            body = error_body(*pairs)
        self.script_next(Reply(status, body, reply_headers, delay, content_type), times=times)

    def default_answer(self, request: RecordedRequest) -> Response:
        return self._mail_send(request).response()

    def _mail_send(self, request: RecordedRequest) -> Reply:
        if request.path != "/v3/mail/send":
            return Reply(404, error_body(("not found", None)))
        if request.method != "POST":
            return Reply(405, error_body(("method not allowed", None)))
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            return Reply(401, error_body(("authorization required", None)))
        if self.api_key is not None and key != self.api_key:
            return Reply(401, error_body((ERROR_MESSAGES[401], None)))
        try:
            mail = json.loads(request.body)
        except ValueError:
            return Reply(400, error_body(("Invalid JSON", None)))
        if not isinstance(mail, dict) or not mail.get("personalizations"):
            return Reply(
                400, error_body(("The personalizations field is required.", "personalizations"))
            )
        if "from" not in mail:
            return Reply(400, error_body(("The from object must be provided.", "from")))
        message_id = new_message_id()
        self.messages.append({**mail, "x_message_id": message_id})
        return Reply(202, b"", {"X-Message-Id": message_id}, content_type=None)


TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"
SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"


class EventWebhookSigner:
    """A SendGrid signed-event-webhook key pair; ``public_key`` is what the dashboard shows."""

    def __init__(self) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_key(self) -> str:
        der = self.private_key.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def sign(self, timestamp: str, body: bytes) -> str:
        der = self.private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(der).decode()

    def webhook(
        self, events: list[dict[str, Any]] | bytes, *, timestamp: datetime | None = None
    ) -> tuple[dict[str, str], bytes]:
        """Headers (lower-case names) and body of a signed event batch."""
        body = (
            events if isinstance(events, bytes) else json.dumps(events, ensure_ascii=False).encode()
        )
        stamp = str(int((timestamp or datetime.now(UTC)).timestamp()))
        headers = {
            "content-type": "application/json",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: self.sign(stamp, body),
        }
        return headers, body


def event(
    name: str,
    x_message_id: str,
    *,
    email: str = "cliente@example.com",
    pipecore_message_id: str | None = None,
    timestamp: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One event as SendGrid posts it; ``extra`` adds fields (``reason=...``, custom args)."""
    moment = timestamp or datetime.now(UTC)
    payload: dict[str, Any] = {
        "email": email,
        "timestamp": int(moment.timestamp()),
        "event": name,
        "sg_event_id": base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("="),
        "sg_message_id": f"{x_message_id}.recvd-5f8c9b7d6-abcde-1-64F0C2A1-3.0",
        "smtp-id": f"<{x_message_id}@ismtpd0001p1iad2.sendgrid.net>",
    }
    if name == "bounce":
        payload.update(
            reason="550 5.1.1 The email account that you tried to reach does not exist.",
            status="5.1.1",
            type="bounce",
            bounce_classification="Invalid Address",
        )
    elif name == "dropped":
        payload["reason"] = "Bounced Address"
    elif name == "deferred":
        payload.update(response="400 try again later", attempt="1")
    if pipecore_message_id is not None:
        payload["pipecore_message_id"] = pipecore_message_id
    payload.update(extra)
    return payload
