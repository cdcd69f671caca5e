"""A loopback stand-in for Resend's API, and Svix-signed Resend webhooks.

``FakeResend`` answers ``POST /emails`` as Resend does: ``200 {"id": <uuid>}``, the same answer
for a repeated ``Idempotency-Key`` with the same body (and nothing sent twice), 409 for the same key
with another body, 401/403 for a missing or wrong key; ``GET /emails/receiving/{id}`` answers the
received emails a test put there with ``receive``. Tests script failures with ``fail_next``.
``webhook`` builds a signed callback (headers and body) to hand to the provider or POST to a
running daemon; ``email_event`` builds payloads shaped like the ``webhooks:`` section of Resend's
OpenAPI document, which ``validate_event`` checks them against.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import jsonschema
from starlette.responses import Response
from svix.webhooks import Webhook

from pipecored.testing import RecordedRequest, Reply, ScriptedFake
from tests.fakes.specs import load_spec, provider_check

RECEIVING = "/emails/receiving/"

# The name Resend gives each status, for fail_next's default.
ERROR_NAMES = {
    400: "validation_error",
    401: "missing_api_key",
    403: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    409: "invalid_idempotent_request",
    422: "validation_error",
    429: "rate_limit_exceeded",
    451: "security_error",
    500: "internal_server_error",
}


def error_body(status: int, name: str, message: str) -> bytes:
    return json.dumps({"statusCode": status, "name": name, "message": message}).encode()


def error_reply(status: int, message: str, *, name: str | None = None) -> Reply:
    """Resend's error answer (the name defaults by status)."""
    error_name = name or ERROR_NAMES.get(status, "application_error")
    return Reply(status, error_body(status, error_name, message))


class FakeResend(ScriptedFake):
    """Resend's ``/emails`` on 127.0.0.1. ``emails`` lists the accepted sends (parsed JSON
    plus their ``id``), ``requests`` every request that arrived, each checked against Resend's
    OpenAPI document as it arrived."""

    def __init__(self, *, api_key: str | None = None) -> None:
        super().__init__(check=provider_check("resend"))
        self.api_key = api_key
        self.emails: list[dict[str, Any]] = []
        # received emails by id, for GET /emails/receiving/{email_id}
        self.received: dict[str, dict[str, Any]] = {}
        self._idempotent: dict[str, tuple[bytes, str]] = {}

    def reset(self) -> None:
        super().reset()
        self.emails.clear()
        self.received.clear()
        self._idempotent.clear()

    def fail_next(
        self,
        status: int = 429,
        *,
        name: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        ratelimit_reset: float | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
        delay: float = 0.0,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests with ``status`` (an error in Resend's shape unless
        ``body`` is given; any status works, e.g. a 200 without an id)."""
        reply_headers = dict(headers or {})
        if retry_after is not None:
            reply_headers["retry-after"] = f"{retry_after:g}"
        if ratelimit_reset is not None:
            reply_headers["ratelimit-reset"] = f"{ratelimit_reset:g}"
        if body is None:
            error_name = name or ERROR_NAMES.get(status, "application_error")
            body = error_body(status, error_name, message or f"fake Resend error {error_name}")
        self.script_next(Reply(status, body, reply_headers, delay, content_type), times=times)

    def receive(self, email_id: str, **fields: Any) -> None:
        """Hold a received email, shaped like ``GetReceivedEmailResponse``."""
        self.received[email_id] = {"object": "email", "id": email_id, **fields}

    def default_answer(self, request: RecordedRequest) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused.response()
        if request.path.startswith(RECEIVING):
            return self._receiving(request).response()
        return self._emails(request).response()

    @staticmethod
    def _route(request: RecordedRequest) -> tuple[str, str] | None:
        if request.path == "/emails":
            return "/emails", "POST"
        if request.path.startswith(RECEIVING) and "/" not in request.path[len(RECEIVING) :]:
            return RECEIVING, "GET"
        return None

    def _refused(self, request: RecordedRequest) -> Reply | None:
        """Resend's answers before an endpoint looks at the request: route, method, key."""
        route = self._route(request)
        if route is None:
            return Reply(
                404, error_body(404, "not_found", "The requested endpoint does not exist.")
            )
        if request.method != route[1]:
            return Reply(405, error_body(405, "method_not_allowed", "Method is not allowed."))
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            return Reply(401, error_body(401, "missing_api_key", "Missing API key"))
        if self.api_key is not None and key != self.api_key:
            return Reply(403, error_body(403, "invalid_api_key", "API key is invalid"))
        if not request.headers.get("user-agent"):
            return Reply(403, error_body(403, "validation_error", "User-Agent is required"))
        return None

    def _receiving(self, request: RecordedRequest) -> Reply:
        email = self.received.get(request.path[len(RECEIVING) :])
        if email is None:
            return Reply(404, error_body(404, "not_found", "Email not found"))
        return Reply(200, json.dumps(email, ensure_ascii=False).encode())

    def _emails(self, request: RecordedRequest) -> Reply:
        try:
            email = json.loads(request.body)
        except ValueError:
            return Reply(400, error_body(400, "validation_error", "Invalid JSON body"))
        missing = [f for f in ("from", "to", "subject") if f not in email]
        if missing:
            return Reply(
                422, error_body(422, "missing_required_field", f"Missing `{missing[0]}` field.")
            )

        idempotency_key = request.headers.get("idempotency-key")
        if idempotency_key is not None and idempotency_key in self._idempotent:
            first_body, first_id = self._idempotent[idempotency_key]
            if first_body != request.body:
                return Reply(
                    409,
                    error_body(
                        409,
                        "invalid_idempotent_request",
                        "Same idempotency key used with a different request payload.",
                    ),
                )
            return Reply(200, json.dumps({"id": first_id}).encode())
        email_id = str(uuid.uuid4())
        if idempotency_key is not None:
            self._idempotent[idempotency_key] = (request.body, email_id)
        self.emails.append({**email, "id": email_id})
        return Reply(200, json.dumps({"id": email_id}).encode())


_EVENT_SCHEMAS = {
    "email.sent": "EmailSentEvent",
    "email.delivered": "EmailDeliveredEvent",
    "email.delivery_delayed": "EmailDeliveryDelayedEvent",
    "email.bounced": "EmailBouncedEvent",
    "email.complained": "EmailComplainedEvent",
    "email.opened": "EmailOpenedEvent",
    "email.clicked": "EmailClickedEvent",
    "email.failed": "EmailFailedEvent",
    "email.scheduled": "EmailScheduledEvent",
    "email.suppressed": "EmailSuppressedEvent",
    "email.received": "EmailReceivedEvent",
}


def validate_event(payload: dict[str, Any]) -> None:
    """Check a webhook payload against its schema in Resend's OpenAPI document."""
    schema = {
        **load_spec("resend"),
        "$ref": f"#/components/schemas/{_EVENT_SCHEMAS[payload['type']]}",
    }
    jsonschema.Draft202012Validator(schema).validate(payload)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def email_event(
    event_type: str,
    email_id: str,
    *,
    to: tuple[str, ...] = ("cliente@example.com",),
    sender: str = "TableFlow <noreply@tableflow.com>",
    subject: str = "Tu reserva",
    created_at: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A Resend webhook payload; ``extra`` adds or replaces ``data`` fields (``bounce=...``)."""
    moment = created_at or datetime.now(UTC)
    data: dict[str, Any] = {
        "email_id": email_id,
        "created_at": _iso(moment),
        "from": sender,
        "to": list(to),
        "subject": subject,
    }
    if event_type == "email.bounced":
        data["bounce"] = {
            "diagnosticCode": ["smtp; 550 5.1.1 user unknown"],
            "message": "The recipient's email address does not exist.",
            "subType": "General",
            "type": "Permanent",
        }
    elif event_type == "email.failed":
        data["failed"] = {"reason": "reached_daily_quota"}
    elif event_type == "email.suppressed":
        data["suppressed"] = {
            "diagnosticCode": [],
            "message": "The address is on the account suppression list.",
            "reason": "previous_bounce",
            "type": "OnAccountSuppressionList",
        }
    elif event_type == "email.clicked":
        data["click"] = {
            "ipAddress": "203.0.113.7",
            "link": "https://tableflow.com/reserva",
            "timestamp": _iso(moment),
            "userAgent": "Mozilla/5.0",
        }
    elif event_type == "email.received":
        data.update(message_id=f"<{email_id}@example.com>", bcc=[], cc=[], attachments=[])
    data.update(extra)
    payload = {"type": event_type, "created_at": _iso(moment), "data": data}
    if event_type in _EVENT_SCHEMAS:
        validate_event(payload)
    return payload


def webhook(
    secret: str,
    payload: dict[str, Any] | bytes,
    *,
    msg_id: str | None = None,
    timestamp: datetime | None = None,
) -> tuple[dict[str, str], bytes]:
    """Headers (lower-case names) and body of a callback signed by Svix's own library."""
    body = (
        payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
    )
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    moment = (timestamp or datetime.now(UTC)).astimezone(UTC)
    signature = Webhook(secret).sign(msg_id, moment, body.decode("utf-8"))
    headers = {
        "content-type": "application/json",
        "svix-id": msg_id,
        "svix-timestamp": str(int(moment.timestamp())),
        "svix-signature": signature,
    }
    return headers, body
