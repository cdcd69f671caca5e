"""The SendGrid provider against a loopback SendGrid and ECDSA-signed event webhooks."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pipecored_sendgrid import SendGridProvider, register_providers
from sendgrid.helpers.eventwebhook import EventWebhook

from pipecored import (
    Attachment,
    MessageRejected,
    OutboundMessage,
    Provider,
    ProviderError,
    ProviderTimeout,
    RecipientOptOut,
    StatusEvent,
    WebhookContext,
    WebhookPayloadError,
    WebhookSignatureError,
    __version__,
)
from pipecored.testing import (
    ProviderContract,
    Reply,
    ScriptedFake,
    SignedWebhook,
    WebhookContract,
)
from tests.fakes.sendgrid import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    EventWebhookSigner,
    FakeSendGrid,
    error_body,
    event,
)
from tests.plugins import support
from tests.plugins.support import HTML, SUBJECT, TEXT

API_KEY = "SG.tableflow_key.0123456789abcdefghijklmnopqrstuvwxyz"
SIGNER = EventWebhookSigner()
OTHER_TENANT_SIGNER = EventWebhookSigner()
CREDENTIALS = {
    "apiKey": API_KEY,
    "fromEmail": "TableFlow <noreply@tableflow.com>",
    "webhookPublicKey": SIGNER.public_key,
}


WEBHOOK_URL = (
    "https://pipecore.example.com/messaging/webhook/email?tenant_id=tableflow_123&provider=sendgrid"
)

provider = SendGridProvider()


@pytest.fixture(scope="session")  # one server for the run, however the tests are ordered
def shared_fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid(api_key=API_KEY) as fake:
        yield fake


send_context = functools.partial(
    support.send_context, tenant_id="tableflow_123", channel="email", credentials=CREDENTIALS
)


email = functools.partial(support.email_message, "msg_01HZYSENDGRID")


class TestSendGridContract(ProviderContract, WebhookContract):
    provider = provider
    channel = "email"
    credentials = CREDENTIALS
    wrong_credentials = {**CREDENTIALS, "apiKey": "SG.revoked.key0000"}
    wrong_credentials_code = "http_401"
    # SendGrid accepted the message: failing it would invite a second copy.
    answer_without_id = "accepted"
    plain_answer_message = "SendGrid answered HTTP {status}"
    error_text_verbatim = True

    def start_fake(self) -> ScriptedFake:
        return FakeSendGrid(api_key=API_KEY).start()

    def message(self) -> OutboundMessage:
        return email()

    def error_reply(self, status: int, text: str) -> Reply:
        return Reply(status, error_body((text, None)))

    def reply_without_id(self) -> Reply:
        return Reply(202, b"", content_type=None)

    # The webhook contract: how the provider signs a callback.

    signing_credential = "webhookPublicKey"
    signature_headers = (SIGNATURE_HEADER,)
    missing_signing_credential_message = "no webhookPublicKey"

    def callback_body(self) -> bytes:
        return json.dumps([event("delivered", "X1", pipecore_message_id="msg_a")]).encode()

    def sign(self, body: bytes) -> SignedWebhook:
        return signed(SIGNER, body)

    def sign_for_another_tenant(self, body: bytes) -> SignedWebhook:
        headers, body = OTHER_TENANT_SIGNER.webhook(body)
        # What SendGrid's own verifier says of it, too.
        assert not sendgrid_accepts(headers, body, SIGNER.public_key)
        return SignedWebhook("POST", WEBHOOK_URL, headers, body)


# --- the plugin ----------------------------------------------------------------------------------


def test_registers_one_email_provider() -> None:
    registered: list[Provider] = []
    register_providers(register=registered.append)
    assert [type(p) for p in registered] == [SendGridProvider]
    sendgrid = registered[0]
    assert sendgrid.name == "sendgrid"
    assert sendgrid.channels == frozenset({"email"})
    assert sendgrid.default_base_url == "https://api.sendgrid.com"
    assert [c.name for c in sendgrid.credentials] == ["apiKey", "fromEmail", "webhookPublicKey"]
    # The public key verifies signatures; it is not a secret and may be shown unmasked.
    assert sendgrid.secret_names() == {"apiKey"}
    assert [c.name for c in sendgrid.credentials if c.required_for("email")] == [
        "apiKey",
        "fromEmail",
    ]


# --- sending -------------------------------------------------------------------------------------


async def test_send_posts_the_mail_with_every_field(
    fake: FakeSendGrid, any_client: httpx.AsyncClient
) -> None:
    message = email(
        to=("begona@example.com", "Íñigo Núñez <inigo@example.com>"),
        text=TEXT,
        reply_to=("Reservas <reservas@tableflow.com>",),
        cc=("sala@tableflow.com",),
        bcc=("auditoria@tableflow.com",),
        headers={"X-Entity-Ref-ID": "booking-42"},
        tags={"category": "booking", "restaurant": "la_bodega"},
    )
    result = await provider.send(message, send_context(any_client, fake.url))

    assert result.provider_message_id == fake.messages[0]["x_message_id"]
    assert (result.status, result.http_status) == ("sent", 202)
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v3/mail/send")
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"pipecored/{__version__}"
    assert json.loads(request.body) == {
        "personalizations": [
            {
                "to": [
                    {"email": "begona@example.com"},
                    {"email": "inigo@example.com", "name": "Íñigo Núñez"},
                ],
                "cc": [{"email": "sala@tableflow.com"}],
                "bcc": [{"email": "auditoria@tableflow.com"}],
                "custom_args": {
                    "category": "booking",
                    "restaurant": "la_bodega",
                    "pipecore_message_id": message.id,
                },
            }
        ],
        "from": {"email": "noreply@tableflow.com", "name": "TableFlow"},
        "reply_to": {"email": "reservas@tableflow.com", "name": "Reservas"},
        "subject": SUBJECT,
        "content": [
            {"type": "text/plain", "value": TEXT},
            {"type": "text/html", "value": HTML},
        ],
        "headers": {"X-Entity-Ref-ID": "booking-42"},
        "categories": ["booking", "la_bodega"],
    }


async def test_text_reaches_sendgrid_byte_exact(
    fake: FakeSendGrid, http: httpx.AsyncClient
) -> None:
    await provider.send(email(text=TEXT), send_context(http, fake.url))

    [request] = fake.requests
    # Sent as UTF-8, not as \u escapes, and decoded back to exactly what the client sent.
    assert SUBJECT.encode("utf-8") in request.body
    sent = json.loads(request.body.decode("utf-8"))
    assert sent["subject"] == SUBJECT
    assert sent["content"] == [
        {"type": "text/plain", "value": TEXT},
        {"type": "text/html", "value": HTML},
    ]


async def test_send_leaves_out_fields_the_message_does_not_have(
    fake: FakeSendGrid, http: httpx.AsyncClient
) -> None:
    await provider.send(email(), send_context(http, fake.url))

    assert json.loads(fake.requests[0].body) == {
        "personalizations": [
            {
                "to": [{"email": "begona@example.com"}],
                "custom_args": {"pipecore_message_id": "msg_01HZYSENDGRID"},
            }
        ],
        "from": {"email": "noreply@tableflow.com", "name": "TableFlow"},
        "subject": SUBJECT,
        "content": [{"type": "text/html", "value": HTML}],
    }


async def test_several_reply_to_addresses_use_the_list(
    fake: FakeSendGrid, http: httpx.AsyncClient
) -> None:
    message = email(reply_to=("reservas@tableflow.com", "Sala <sala@tableflow.com>"))
    await provider.send(message, send_context(http, fake.url))

    sent = json.loads(fake.requests[0].body)
    assert "reply_to" not in sent
    assert sent["reply_to_list"] == [
        {"email": "reservas@tableflow.com"},
        {"email": "sala@tableflow.com", "name": "Sala"},
    ]


@pytest.mark.parametrize(
    ("tags", "categories"),
    [
        pytest.param({"a": "x", "b": "x", "c": "y"}, ["x", "y"], id="duplicates-merged"),
        pytest.param({f"t{i}": f"v{i}" for i in range(11)}, None, id="more-than-ten"),
        pytest.param({"long": "v" * 256}, None, id="value-too-long"),
        pytest.param({"empty": ""}, None, id="empty-value"),
    ],
)
async def test_tags_become_categories_only_within_sendgrids_limits(
    tags: dict[str, str], categories: list[str] | None, fake: FakeSendGrid, http: httpx.AsyncClient
) -> None:
    await provider.send(email(tags=tags), send_context(http, fake.url))

    sent = json.loads(fake.requests[0].body)
    assert sent.get("categories") == categories
    # custom_args carry every tag whatever happens to categories.
    assert sent["personalizations"][0]["custom_args"] == {
        **tags,
        "pipecore_message_id": "msg_01HZYSENDGRID",
    }


async def test_a_tag_cannot_replace_our_message_id(
    fake: FakeSendGrid, http: httpx.AsyncClient
) -> None:
    await provider.send(email(tags={"pipecore_message_id": "forged"}), send_context(http, fake.url))

    custom_args = json.loads(fake.requests[0].body)["personalizations"][0]["custom_args"]
    assert custom_args == {"pipecore_message_id": "msg_01HZYSENDGRID"}


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        pytest.param("reservas@tableflow.com", {"email": "reservas@tableflow.com"}, id="bare"),
        pytest.param(
            "Reservas TableFlow <reservas@tableflow.com>",
            {"email": "reservas@tableflow.com", "name": "Reservas TableFlow"},
            id="name-and-address",
        ),
        pytest.param(
            "Begoña <begona@TableFlow.COM>",
            {"email": "begona@TableFlow.COM", "name": "Begoña"},
            id="domain-case-insensitive",
        ),
    ],
)
async def test_from_in_the_tenant_domain_is_used(
    sender: str, expected: dict[str, str], fake: FakeSendGrid, http: httpx.AsyncClient
) -> None:
    message = email(sender=sender)
    provider.check_message(message, CREDENTIALS)
    await provider.send(message, send_context(http, fake.url))
    assert json.loads(fake.requests[0].body)["from"] == expected


# A from outside the tenant's domain: test_email_senders.py.


@pytest.mark.parametrize(
    ("status", "errors", "code", "retryable", "unavailable"),
    [
        pytest.param(
            400,
            [("The from email does not contain a valid address.", "from.email")],
            "invalid_from_email",
            False,
            False,
            id="400-from",
        ),
        pytest.param(
            400,
            [("Does not contain a valid address.", "personalizations.0.to.1.email")],
            "invalid_personalizations_to_email",
            False,
            False,
            id="400-recipient",
        ),
        pytest.param(400, [("invalid request", "null")], "http_400", False, False, id="400"),
        pytest.param(401, [("authorization required", None)], "http_401", False, True, id="401"),
        pytest.param(
            403,
            [("The from address does not match a verified Sender Identity.", "from")],
            "http_403",
            False,
            True,
            id="403-sender-identity",
        ),
        pytest.param(404, [("not found", None)], "http_404", False, False, id="404"),
        pytest.param(413, [("content too large", None)], "http_413", False, False, id="413"),
        pytest.param(429, [("too many requests", None)], "http_429", True, False, id="429"),
        pytest.param(500, [("internal server error", None)], "http_500", True, False, id="500"),
        pytest.param(502, [("bad gateway", None)], "http_502", True, False, id="502"),
        pytest.param(503, [("unavailable", None)], "http_503", True, False, id="503"),
        pytest.param(504, [("gateway timeout", None)], "http_504", True, False, id="504"),
    ],
)
async def test_sendgrid_errors_are_classified(
    status: int,
    errors: list[tuple[str, str | None]],
    code: str,
    retryable: bool,
    unavailable: bool,
    fake: FakeSendGrid,
    http: httpx.AsyncClient,
) -> None:
    fake.fail_next(status, errors=errors)

    with pytest.raises(ProviderError) as caught:
        await provider.send(email(), send_context(http, fake.url))

    error = caught.value
    assert type(error) is ProviderError
    assert (error.provider, error.code, error.http_status) == ("sendgrid", code, status)
    assert (error.retryable, error.unavailable) == (retryable, unavailable)
    assert error.message == errors[0][0]
    assert fake.messages == []


async def test_several_errors_are_counted_in_the_message(
    fake: FakeSendGrid, http: httpx.AsyncClient
) -> None:
    fake.fail_next(400, errors=[("The subject is required.", "subject"), ("Bad content", None)])

    with pytest.raises(ProviderError) as caught:
        await provider.send(email(), send_context(http, fake.url))

    assert caught.value.message == "The subject is required. (and 1 more)"
    assert caught.value.code == "invalid_subject"


async def test_the_rate_limit_reset_timestamp_becomes_a_wait(
    fake: FakeSendGrid, http: httpx.AsyncClient
) -> None:
    fake.fail_next(429, retry_after=30)

    with pytest.raises(ProviderError) as caught:
        await provider.send(email(), send_context(http, fake.url))

    assert caught.value.retryable
    assert caught.value.retry_after is not None
    assert 28 <= caught.value.retry_after <= 30


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # Retry-After alone: the contract's cases.
        pytest.param({"X-RateLimit-Reset": "1000"}, 0.0, id="reset-in-the-past"),
        pytest.param({"X-RateLimit-Reset": "soon", "Retry-After": "4"}, 4.0, id="bad-reset"),
        pytest.param({"X-RateLimit-Reset": "later"}, None, id="unreadable"),
    ],
)
async def test_rate_limit_headers(
    headers: dict[str, str], expected: float | None, fake: FakeSendGrid, http: httpx.AsyncClient
) -> None:
    fake.fail_next(429, headers=headers)

    with pytest.raises(ProviderError) as caught:
        await provider.send(email(), send_context(http, fake.url))

    assert caught.value.retry_after == expected


async def test_the_reset_header_wins_over_retry_after(
    fake: FakeSendGrid, http: httpx.AsyncClient
) -> None:
    fake.fail_next(429, retry_after=20, headers={"Retry-After": "3"})

    with pytest.raises(ProviderError) as caught:
        await provider.send(email(), send_context(http, fake.url))

    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 15


async def test_a_retry_after_a_timeout_can_duplicate_but_both_copies_carry_our_id(
    fake: FakeSendGrid, http: httpx.AsyncClient
) -> None:
    # The documented cost of retrying without an idempotency key: SendGrid may have accepted the
    # first call. Every copy's events still lead back to our message.
    release = fake.hold_next()
    with pytest.raises(ProviderTimeout):
        await provider.send(email(), send_context(http, fake.url, timeout=0.2))
    release.set()
    await fake.wait_for_answers(1)

    retried = await provider.send(email(), send_context(http, fake.url))

    assert len(fake.messages) == 2
    assert retried.provider_message_id == fake.messages[1]["x_message_id"]
    assert [m["personalizations"][0]["custom_args"] for m in fake.messages] == [
        {"pipecore_message_id": "msg_01HZYSENDGRID"}
    ] * 2


# --- webhooks ------------------------------------------------------------------------------------


webhook_request = functools.partial(support.webhook_request, WEBHOOK_URL)


def webhook_context(credentials: Mapping[str, str] = CREDENTIALS) -> WebhookContext:
    return WebhookContext(tenant_id="tableflow_123", channel="email", credentials=credentials)


def signed(signer: EventWebhookSigner, body: bytes) -> SignedWebhook:
    headers, body = signer.webhook(body)
    return SignedWebhook("POST", WEBHOOK_URL, headers, body)


def sendgrid_accepts(headers: Mapping[str, str], body: bytes, public_key: str) -> bool:
    """SendGrid's own verifier, from its Python library."""
    return bool(
        EventWebhook(public_key).verify_signature(
            body.decode("utf-8"), headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER]
        )
    )


async def test_a_signed_batch_is_applied_in_order() -> None:
    moment = datetime(2026, 11, 27, 21, 0, 5, tzinfo=UTC)
    events = [
        event("processed", "X1", pipecore_message_id="msg_a", timestamp=moment),
        event("delivered", "X1", pipecore_message_id="msg_a", timestamp=moment),
        event("open", "X1", pipecore_message_id="msg_a", timestamp=moment),
        event("bounce", "X2", pipecore_message_id="msg_b", timestamp=moment),
    ]
    headers, body = SIGNER.webhook(events)
    assert sendgrid_accepts(headers, body, SIGNER.public_key)

    result = await provider.handle_webhook(webhook_request(headers, body), webhook_context())

    assert result.response.status == 200
    assert result.events == [
        StatusEvent(
            status="sent", provider_message_id="X1", message_id="msg_a", occurred_at=moment
        ),
        StatusEvent(
            status="delivered", provider_message_id="X1", message_id="msg_a", occurred_at=moment
        ),
        StatusEvent(
            status="read", provider_message_id="X1", message_id="msg_a", occurred_at=moment
        ),
        StatusEvent(
            status="failed",
            provider_message_id="X2",
            message_id="msg_b",
            error_code="bounce",
            error_message="550 5.1.1 The email account that you tried to reach does not exist.",
            occurred_at=moment,
        ),
        RecipientOptOut(
            address="cliente@example.com",
            reason="bounce",
            provider_message_id="X2",
            detail="550 5.1.1 The email account that you tried to reach does not exist.",
        ),
    ]


async def test_events_of_a_sent_message_find_it_both_ways(
    fake: FakeSendGrid, http: httpx.AsyncClient
) -> None:
    message = email()
    sent = await provider.send(message, send_context(http, fake.url))
    custom_args = fake.messages[0]["personalizations"][0]["custom_args"]
    headers, body = SIGNER.webhook([event("delivered", sent.provider_message_id, **custom_args)])

    result = await provider.handle_webhook(webhook_request(headers, body), webhook_context())

    [status] = result.events
    assert isinstance(status, StatusEvent)
    assert (status.provider_message_id, status.message_id) == (sent.provider_message_id, message.id)


@pytest.mark.parametrize(
    ("sg_message_id", "expected"),
    [
        pytest.param(
            "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", "14c5d75ce93", id="many-dots"
        ),
        pytest.param("W86EgYT6SQKk0lRflfLRsA.recvd-1-0", "W86EgYT6SQKk0lRflfLRsA", id="one-dot"),
        pytest.param("W86EgYT6SQKk0lRflfLRsA", "W86EgYT6SQKk0lRflfLRsA", id="no-dot"),
    ],
)
async def test_the_provider_id_is_the_part_before_the_first_dot(
    sg_message_id: str, expected: str
) -> None:
    headers, body = SIGNER.webhook([event("delivered", "unused", sg_message_id=sg_message_id)])

    result = await provider.handle_webhook(webhook_request(headers, body), webhook_context())

    [status] = result.events
    assert isinstance(status, StatusEvent)
    assert (status.provider_message_id, status.message_id) == (expected, None)


async def test_an_event_is_matched_by_our_id_alone_when_needed() -> None:
    only_ours = event("delivered", "X1", pipecore_message_id="msg_a")
    del only_ours["sg_message_id"]
    neither = event("delivered", "X2")
    del neither["sg_message_id"]
    headers, body = SIGNER.webhook([only_ours, neither])

    result = await provider.handle_webhook(webhook_request(headers, body), webhook_context())

    assert [
        (e.provider_message_id, e.message_id) for e in result.events if isinstance(e, StatusEvent)
    ] == [(None, "msg_a")]


@pytest.mark.parametrize(
    ("name", "extra", "status", "code", "message"),
    [
        pytest.param("processed", {}, "sent", None, None, id="processed"),
        pytest.param("delivered", {}, "delivered", None, None, id="delivered"),
        pytest.param("open", {}, "read", None, None, id="open"),
        pytest.param(
            "bounce",
            {"reason": "550 no such user"},
            "failed",
            "bounce",
            "550 no such user",
            id="bounce",
        ),
        pytest.param(
            "bounce",
            {"type": "blocked", "reason": "554 blocked by policy"},
            "failed",
            "blocked",
            "554 blocked by policy",
            id="bounce-of-type-blocked",
        ),
        pytest.param(
            "blocked", {"reason": "IP listed"}, "failed", "blocked", "IP listed", id="blocked"
        ),
        pytest.param(
            "dropped",
            {"reason": "Bounced Address"},
            "failed",
            "dropped",
            "Bounced Address",
            id="dropped",
        ),
        pytest.param(
            "dropped",
            {"reason": None, "response": "Unsubscribed Address"},
            "failed",
            "dropped",
            "Unsubscribed Address",
            id="dropped-with-response",
        ),
        pytest.param(
            "spamreport",
            {},
            "failed",
            "spamreport",
            "the recipient marked the email as spam",
            id="spamreport",
        ),
        pytest.param("deferred", {}, None, None, None, id="deferred"),
        pytest.param("click", {"url": "https://x"}, None, None, None, id="click"),
        pytest.param("unsubscribe", {}, None, None, None, id="unsubscribe"),
        pytest.param("group_unsubscribe", {"asm_group_id": 1}, None, None, None, id="group-unsub"),
        pytest.param("group_resubscribe", {"asm_group_id": 1}, None, None, None, id="group-resub"),
    ],
)
async def test_status_mapping(
    name: str, extra: dict[str, Any], status: str | None, code: str | None, message: str | None
) -> None:
    headers, body = SIGNER.webhook([event(name, "X1", pipecore_message_id="msg_a", **extra)])

    result = await provider.handle_webhook(webhook_request(headers, body), webhook_context())

    assert result.response.status == 200
    statuses = [e for e in result.events if isinstance(e, StatusEvent)]
    if status is None:
        assert statuses == []
        return
    [status_event] = statuses
    assert (status_event.status, status_event.error_code, status_event.error_message) == (
        status,
        code,
        message,
    )


@pytest.mark.parametrize(
    ("name", "extra", "reason"),
    [
        pytest.param("bounce", {}, "bounce", id="bounce"),
        pytest.param("spamreport", {}, "complaint", id="spamreport"),
        pytest.param("unsubscribe", {}, "unsubscribe", id="unsubscribe"),
        pytest.param("group_unsubscribe", {"asm_group_id": 7}, "unsubscribe", id="group-unsub"),
        pytest.param("bounce", {"type": "blocked"}, None, id="blocked-is-temporary"),
        pytest.param("blocked", {}, None, id="blocked"),
        pytest.param("dropped", {"reason": "Bounced Address"}, None, id="dropped"),
        pytest.param("deferred", {}, None, id="deferred"),
        pytest.param("group_resubscribe", {"asm_group_id": 7}, None, id="group-resub"),
        pytest.param("delivered", {}, None, id="delivered"),
    ],
)
async def test_hard_bounces_complaints_and_unsubscribes_opt_the_address_out(
    name: str, extra: dict[str, Any], reason: str | None
) -> None:
    """SPEC section 9: the host suppresses what these name, for the tenant and channel."""
    payload = event(name, "X1", email="Begoña@Example.com", pipecore_message_id="msg_a", **extra)
    headers, body = SIGNER.webhook([payload])

    result = await provider.handle_webhook(webhook_request(headers, body), webhook_context())

    opt_outs = [e for e in result.events if isinstance(e, RecipientOptOut)]
    if reason is None:
        assert opt_outs == []
        return
    [opt_out] = opt_outs
    assert (opt_out.address, opt_out.reason, opt_out.provider_message_id) == (
        "Begoña@Example.com",
        reason,
        "X1",
    )


@pytest.mark.parametrize(
    ("reason", "detail"),
    [
        pytest.param("550 5.1.1 Unknown user", "550 5.1.1 Unknown user", id="as-written"),
        pytest.param(
            "\t550 5.1.1 Buzón inexistente ñ  \r\n", "550 5.1.1 Buzón inexistente ñ", id="trimmed"
        ),
        pytest.param("x" * 150 + " " + "y" * 150, "x" * 150 + " " + "y" * 49, id="cut-to-200"),
        pytest.param(" ", None, id="blank"),
        pytest.param(None, None, id="missing"),
    ],
)
async def test_a_bounce_keeps_sendgrids_reason_trimmed(
    reason: str | None, detail: str | None
) -> None:
    payload = event("bounce", "X1", email="ana@example.com")
    if reason is None:
        del payload["reason"]
    else:
        payload["reason"] = reason
    headers, body = SIGNER.webhook([payload])

    result = await provider.handle_webhook(webhook_request(headers, body), webhook_context())

    [opt_out] = [e for e in result.events if isinstance(e, RecipientOptOut)]
    assert opt_out.detail == detail


def _tamper(headers: dict[str, str], body: bytes, how: str) -> tuple[dict[str, str], bytes]:
    headers = dict(headers)
    if how == "body":
        body = body.replace(b"delivered", b"bounce")
    elif how == "timestamp":
        headers[TIMESTAMP_HEADER] = str(int(headers[TIMESTAMP_HEADER]) - 1)
    elif how == "signature":
        headers[SIGNATURE_HEADER] = SIGNER.sign(headers[TIMESTAMP_HEADER], b"[]")
    elif how == "other-tenant":
        headers[SIGNATURE_HEADER] = OTHER_TENANT_SIGNER.sign(headers[TIMESTAMP_HEADER], body)
    return headers, body


@pytest.mark.parametrize(
    "how",
    [
        pytest.param("body", id="body-changed"),
        pytest.param("timestamp", id="timestamp-changed"),
        pytest.param("signature", id="signature-of-another-body"),
        pytest.param("other-tenant", id="signed-with-another-tenants-key"),
    ],
)
async def test_a_forged_batch_is_refused_as_sendgrid_refuses_it(how: str) -> None:
    headers, body = _tamper(*SIGNER.webhook([event("delivered", "X1")]), how)

    assert not sendgrid_accepts(headers, body, SIGNER.public_key)
    with pytest.raises(WebhookSignatureError):
        await provider.handle_webhook(webhook_request(headers, body), webhook_context())


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-headers"),
        pytest.param({TIMESTAMP_HEADER: "1764277205"}, id="no-signature"),
        pytest.param({SIGNATURE_HEADER: "MEUCIQ=="}, id="no-timestamp"),
    ],
)
async def test_an_unsigned_batch_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(WebhookSignatureError):
        await provider.handle_webhook(webhook_request(headers, b"[]"), webhook_context())


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("%%%", id="not-base64"),
        pytest.param(base64.b64encode(b"not der").decode(), id="not-der"),
    ],
)
async def test_an_unreadable_signature_is_refused(signature: str) -> None:
    headers, body = SIGNER.webhook([event("delivered", "X1")])
    headers[SIGNATURE_HEADER] = signature

    with pytest.raises(WebhookSignatureError):
        await provider.handle_webhook(webhook_request(headers, body), webhook_context())


@pytest.mark.parametrize(
    ("age", "accepted"),
    [
        pytest.param(timedelta(minutes=9, seconds=50), True, id="9m50s-old"),
        pytest.param(timedelta(minutes=-9, seconds=-50), True, id="9m50s-ahead"),
        pytest.param(timedelta(minutes=10, seconds=10), False, id="10m10s-old"),
        pytest.param(timedelta(minutes=-10, seconds=-10), False, id="10m10s-ahead"),
        pytest.param(timedelta(days=30), False, id="a-month-old"),
    ],
)
async def test_the_timestamp_must_be_within_ten_minutes(age: timedelta, accepted: bool) -> None:
    received_at = datetime.now(UTC)
    headers, body = SIGNER.webhook([event("delivered", "X1")], timestamp=received_at - age)
    # The signature itself is good: only its age decides.
    assert sendgrid_accepts(headers, body, SIGNER.public_key)
    request = webhook_request(headers, body, received_at=received_at)

    if accepted:
        result = await provider.handle_webhook(request, webhook_context())
        assert len(result.events) == 1
    else:
        with pytest.raises(WebhookSignatureError, match="tolerance"):
            await provider.handle_webhook(request, webhook_context())


def _public_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


@pytest.mark.parametrize(
    "public_key",
    [
        pytest.param("not base64!", id="not-base64"),
        pytest.param(base64.b64encode(b"not a key").decode(), id="not-der"),
        pytest.param(_public_key(ec.generate_private_key(ec.SECP384R1())), id="p384"),
        pytest.param(_public_key(rsa.generate_private_key(65537, 2048)), id="rsa"),
    ],
)
async def test_a_public_key_that_is_not_p256_is_refused(public_key: str) -> None:
    headers, body = SIGNER.webhook([event("delivered", "X1")])

    with pytest.raises(WebhookSignatureError, match="webhookPublicKey"):
        await provider.handle_webhook(
            webhook_request(headers, body),
            webhook_context({**CREDENTIALS, "webhookPublicKey": public_key}),
        )


async def test_a_pem_public_key_is_accepted() -> None:
    pem = SIGNER.private_key.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    headers, body = SIGNER.webhook([event("delivered", "X1")])

    result = await provider.handle_webhook(
        webhook_request(headers, body),
        webhook_context({**CREDENTIALS, "webhookPublicKey": pem.decode()}),
    )

    assert len(result.events) == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"event": "delivered"}', id="object-not-array"),
        pytest.param(b'["delivered"]', id="item-not-object"),
        pytest.param(b'[{"sg_message_id": "X1.0"}]', id="no-event-name"),
    ],
)
async def test_a_signed_but_malformed_body_is_a_payload_error(body: bytes) -> None:
    headers, body = SIGNER.webhook(body)

    with pytest.raises(WebhookPayloadError):
        await provider.handle_webhook(webhook_request(headers, body), webhook_context())


async def test_an_empty_batch_is_acknowledged() -> None:
    headers, body = SIGNER.webhook([])

    result = await provider.handle_webhook(webhook_request(headers, body), webhook_context())

    assert (result.events, result.response.status) == ([], 200)


async def test_unicode_in_events_survives_verification() -> None:
    headers, body = SIGNER.webhook(
        [event("dropped", "X1", reason="Dirección inválida: ñandú@例え.jp 🚫")]
    )
    assert sendgrid_accepts(headers, body, SIGNER.public_key)

    result = await provider.handle_webhook(webhook_request(headers, body), webhook_context())

    [status] = result.events
    assert isinstance(status, StatusEvent)
    assert status.error_message == "Dirección inválida: ñandú@例え.jp 🚫"


# Attachments (SPEC section 7): each request checked against SendGrid's document

PDF = b"%PDF-1.4\n% factura \xc3\xb1\n"


async def test_attachments_go_as_base64_content(
    fake: FakeSendGrid, http: httpx.AsyncClient
) -> None:
    message = replace(
        email(),
        attachments=(Attachment("factura.pdf", content=PDF, content_type="application/pdf"),),
    )
    await provider.send(message, send_context(http, fake.url))
    sent = json.loads(fake.requests[0].body)
    assert sent["attachments"] == [
        {
            "content": base64.b64encode(PDF).decode(),
            "filename": "factura.pdf",
            "type": "application/pdf",
            "disposition": "attachment",
        }
    ]


@pytest.mark.parametrize(
    ("attachment", "says"),
    [
        pytest.param(Attachment("big.bin", content=b"x" * 30_000_001), "30 MB", id="over-30-mb"),
        pytest.param(
            Attachment("m.pdf", url="https://files.example.com/m.pdf"), "not by url", id="url"
        ),
    ],
)
def test_attachments_sendgrid_cannot_take_are_refused_at_accept_time(
    attachment: Attachment, says: str
) -> None:
    with pytest.raises(MessageRejected) as refused:
        provider.check_message(replace(email(), attachments=(attachment,)), CREDENTIALS)
    assert refused.value.field == "attachments"
    assert says in refused.value.message
