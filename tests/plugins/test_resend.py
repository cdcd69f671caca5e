"""The Resend provider against a loopback Resend and Svix-signed webhooks."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pipecored_resend import ResendProvider, register_providers
from svix.webhooks import Webhook, WebhookVerificationError

from pipecored import (
    Attachment,
    InboundMessage,
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
from pipecored.http import outbound_client
from pipecored.testing import (
    ProviderContract,
    Reply,
    ScriptedFake,
    SignedWebhook,
    WebhookContract,
)
from tests.fakes import resend as resend_fake
from tests.fakes.resend import FakeResend, email_event, webhook
from tests.plugins import support
from tests.plugins.support import HTML, SUBJECT, TEXT

API_KEY = "re_tableflow_0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(b"tableflow-resend-signing-key-32b").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"genda-resend-signing-key-32bytes").decode()
CREDENTIALS = {"apiKey": API_KEY, "fromEmail": "noreply@tableflow.com", "webhookSecret": SECRET}


WEBHOOK_URL = (
    "https://pipecore.example.com/messaging/webhook/email?tenant_id=tableflow_123&provider=resend"
)

provider = ResendProvider()


@pytest.fixture(scope="session")  # one server for the run, however the tests are ordered
def shared_fake() -> Iterator[FakeResend]:
    with FakeResend(api_key=API_KEY) as fake:
        yield fake


send_context = functools.partial(
    support.send_context, tenant_id="tableflow_123", channel="email", credentials=CREDENTIALS
)


email = functools.partial(support.email_message, "msg_01HZYRESEND")


def assert_no_secret(exc: BaseException) -> None:
    for text in (str(exc), repr(exc), getattr(exc, "message", "")):
        assert API_KEY not in text
        assert SECRET not in text
        assert SECRET.removeprefix("whsec_") not in text


class TestResendContract(ProviderContract, WebhookContract):
    provider = provider
    channel = "email"
    credentials = CREDENTIALS
    wrong_credentials = {**CREDENTIALS, "apiKey": "re_revoked_key_0000"}
    wrong_credentials_code = "invalid_api_key"
    # Every retry is safe: the Idempotency-Key makes Resend repeat its first answer.
    answer_without_id = "retried"
    plain_answer_message = "Resend answered HTTP {status}"
    error_text_verbatim = True

    def start_fake(self) -> ScriptedFake:
        return FakeResend(api_key=API_KEY).start()

    def message(self) -> OutboundMessage:
        return email()

    def error_reply(self, status: int, text: str) -> Reply:
        return resend_fake.error_reply(status, text)

    def reply_without_id(self) -> Reply:
        return Reply(200, b"{}")

    def secret_texts(self) -> list[str]:
        return [*super().secret_texts(), SECRET.removeprefix("whsec_")]

    # The webhook contract: how the provider signs a callback.

    signing_credential = "webhookSecret"
    signature_headers = ("svix-signature",)
    missing_signing_credential_message = "no webhookSecret"

    def callback_body(self) -> bytes:
        return json.dumps(email_event("email.delivered", "e-1")).encode()

    def sign(self, body: bytes) -> SignedWebhook:
        return signed(SECRET, body)

    def sign_for_another_tenant(self, body: bytes) -> SignedWebhook:
        return signed(OTHER_SECRET, body)


# --- the plugin ----------------------------------------------------------------------------------


def test_registers_one_email_provider() -> None:
    registered: list[Provider] = []
    register_providers(register=registered.append)
    assert [type(p) for p in registered] == [ResendProvider]
    resend = registered[0]
    assert resend.name == "resend"
    assert resend.channels == frozenset({"email"})
    assert resend.default_base_url == "https://api.resend.com"
    assert [c.name for c in resend.credentials] == ["apiKey", "fromEmail", "webhookSecret"]
    assert resend.secret_names() == {"apiKey", "webhookSecret"}
    assert [c.name for c in resend.credentials if c.required_for("email")] == [
        "apiKey",
        "fromEmail",
    ]


# --- sending -------------------------------------------------------------------------------------


async def test_send_posts_the_email_with_every_field(
    fake: FakeResend, any_client: httpx.AsyncClient
) -> None:
    message = email(
        to=("begona@example.com", "Íñigo Núñez <inigo@example.com>"),
        text=TEXT,
        reply_to=("reservas@tableflow.com",),
        cc=("sala@tableflow.com",),
        bcc=("auditoria@tableflow.com",),
        headers={"X-Entity-Ref-ID": "booking-42"},
        tags={"category": "booking", "restaurant": "la_bodega"},
    )
    result = await provider.send(message, send_context(any_client, fake.url))

    assert result.provider_message_id == fake.emails[0]["id"]
    assert result.status == "sent"
    assert result.http_status == 200
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/emails")
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"pipecored/{__version__}"
    assert request.headers["idempotency-key"] == message.id
    assert json.loads(request.body) == {
        "from": "noreply@tableflow.com",
        "to": ["begona@example.com", "Íñigo Núñez <inigo@example.com>"],
        "subject": SUBJECT,
        "html": HTML,
        "text": TEXT,
        "reply_to": ["reservas@tableflow.com"],
        "cc": ["sala@tableflow.com"],
        "bcc": ["auditoria@tableflow.com"],
        "headers": {"X-Entity-Ref-ID": "booking-42"},
        "tags": [
            {"name": "category", "value": "booking"},
            {"name": "restaurant", "value": "la_bodega"},
        ],
    }


async def test_text_reaches_resend_byte_exact(fake: FakeResend, http: httpx.AsyncClient) -> None:
    await provider.send(email(text=TEXT), send_context(http, fake.url))

    [request] = fake.requests
    # Sent as UTF-8, not as \u escapes, and decoded back to exactly what the client sent.
    assert SUBJECT.encode("utf-8") in request.body
    sent = json.loads(request.body.decode("utf-8"))
    assert (sent["subject"], sent["html"], sent["text"]) == (SUBJECT, HTML, TEXT)


async def test_send_leaves_out_fields_the_message_does_not_have(
    fake: FakeResend, http: httpx.AsyncClient
) -> None:
    await provider.send(email(), send_context(http, fake.url))

    assert json.loads(fake.requests[0].body) == {
        "from": "noreply@tableflow.com",
        "to": ["begona@example.com"],
        "subject": SUBJECT,
        "html": HTML,
    }


async def test_a_repeated_send_does_not_send_twice(
    fake: FakeResend, http: httpx.AsyncClient
) -> None:
    # The host retries after a timeout whose answer it never saw; the key makes that harmless.
    first = await provider.send(email(), send_context(http, fake.url))
    second = await provider.send(email(), send_context(http, fake.url))

    assert second.provider_message_id == first.provider_message_id
    assert len(fake.requests) == 2
    assert len(fake.emails) == 1


@pytest.mark.parametrize(
    "sender",
    [
        pytest.param("reservas@tableflow.com", id="bare-address"),
        pytest.param("Reservas TableFlow <reservas@tableflow.com>", id="name-and-address"),
        pytest.param("Begoña de TableFlow <begona@TableFlow.COM>", id="domain-case-insensitive"),
        pytest.param("<reservas@tableflow.com>", id="angle-brackets-only"),
    ],
)
async def test_from_in_the_tenant_domain_is_used(
    sender: str, fake: FakeResend, http: httpx.AsyncClient
) -> None:
    message = email(sender=sender)
    provider.check_message(message, CREDENTIALS)
    await provider.send(message, send_context(http, fake.url))
    assert json.loads(fake.requests[0].body)["from"] == sender


# A from outside the tenant's domain: test_email_senders.py.


def test_from_domain_comes_from_a_named_from_email() -> None:
    credentials = {**CREDENTIALS, "fromEmail": "TableFlow <noreply@tableflow.com>"}
    provider.check_message(email(sender="hola@tableflow.com"), credentials)
    provider.check_message(email(), credentials)
    with pytest.raises(MessageRejected):
        provider.check_message(email(sender="hola@otro.com"), credentials)


@pytest.mark.parametrize(
    ("status", "name", "retryable", "unavailable"),
    [
        pytest.param(400, "validation_error", False, False, id="400-validation"),
        pytest.param(400, "invalid_idempotency_key", False, False, id="400-idempotency-key"),
        pytest.param(401, "missing_api_key", False, True, id="401-missing-key"),
        pytest.param(401, "restricted_api_key", False, True, id="401-restricted-key"),
        pytest.param(401, "validation_error", False, True, id="401-deleted-key"),
        pytest.param(403, "invalid_api_key", False, True, id="403-invalid-key"),
        pytest.param(403, "validation_error", False, True, id="403-domain-not-verified"),
        pytest.param(404, "not_found", False, False, id="404"),
        pytest.param(409, "invalid_idempotent_request", False, False, id="409-key-reused"),
        pytest.param(409, "concurrent_idempotent_requests", True, False, id="409-in-flight"),
        pytest.param(422, "invalid_from_address", False, False, id="422-from"),
        pytest.param(422, "missing_required_field", False, False, id="422-missing-field"),
        pytest.param(429, "rate_limit_exceeded", True, False, id="429-rate-limit"),
        pytest.param(429, "daily_quota_exceeded", False, True, id="429-daily-quota"),
        pytest.param(429, "monthly_quota_exceeded", False, True, id="429-monthly-quota"),
        pytest.param(451, "security_error", False, False, id="451-security"),
        pytest.param(500, "application_error", True, False, id="500-application"),
        pytest.param(500, "internal_server_error", True, False, id="500-internal"),
        pytest.param(503, "internal_server_error", True, False, id="503"),
    ],
)
async def test_resend_errors_are_classified_by_name(
    status: int,
    name: str,
    retryable: bool,
    unavailable: bool,
    fake: FakeResend,
    http: httpx.AsyncClient,
) -> None:
    fake.fail_next(status, name=name, message=f"Resend says {name}")

    with pytest.raises(ProviderError) as caught:
        await provider.send(email(), send_context(http, fake.url))

    error = caught.value
    assert type(error) is ProviderError
    assert (error.provider, error.code, error.http_status) == ("resend", name, status)
    assert (error.retryable, error.unavailable) == (retryable, unavailable)
    assert error.message == f"Resend says {name}"
    assert fake.emails == []


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # Retry-After alone: the contract's cases.
        pytest.param({"ratelimit-reset": "3"}, 3.0, id="ratelimit-reset"),
        pytest.param({"retry-after": "2", "ratelimit-reset": "9"}, 2.0, id="retry-after-wins"),
        pytest.param(
            {"retry-after": "soon", "ratelimit-reset": "5"}, 5.0, id="unreadable-retry-after"
        ),
    ],
)
async def test_rate_limit_carries_the_wait(
    headers: dict[str, str], expected: float | None, fake: FakeResend, http: httpx.AsyncClient
) -> None:
    fake.fail_next(429, headers=headers)

    with pytest.raises(ProviderError) as caught:
        await provider.send(email(), send_context(http, fake.url))

    assert caught.value.retryable
    assert caught.value.retry_after == expected


async def test_a_retry_after_a_timeout_gets_the_first_answer(
    fake: FakeResend, http: httpx.AsyncClient
) -> None:
    release = fake.hold_next()
    with pytest.raises(ProviderTimeout):
        await provider.send(email(), send_context(http, fake.url, timeout=0.2))
    release.set()
    await fake.wait_for_answers(1)

    # Resend sent it after all; the retry the host makes gets that email's id and sends nothing.
    retried = await provider.send(email(), send_context(http, fake.url))
    assert retried.provider_message_id == fake.emails[0]["id"]
    assert len(fake.emails) == 1


# --- webhooks ------------------------------------------------------------------------------------


webhook_request = functools.partial(support.webhook_request, WEBHOOK_URL)


def webhook_context(credentials: Mapping[str, str] = CREDENTIALS) -> WebhookContext:
    return WebhookContext(tenant_id="tableflow_123", channel="email", credentials=credentials)


def signed(secret: str, body: bytes) -> SignedWebhook:
    headers, body = webhook(secret, body)
    return SignedWebhook("POST", WEBHOOK_URL, headers, body)


async def test_a_signed_event_is_applied() -> None:
    payload = email_event("email.delivered", "4ef9a417-02e9-4d39-ad75-9611e0fcc33c")
    headers, body = webhook(SECRET, payload)

    result = await provider.handle_webhook(webhook_request(headers, body), webhook_context())

    assert result.response.status == 200
    assert result.events == [
        StatusEvent(
            status="delivered",
            provider_message_id="4ef9a417-02e9-4d39-ad75-9611e0fcc33c",
            occurred_at=datetime.fromisoformat(payload["created_at"]),
        )
    ]


async def test_any_matching_signature_passes_while_a_secret_rotates() -> None:
    headers, body = webhook(SECRET, email_event("email.sent", "e-1"))
    rotated = Webhook(OTHER_SECRET).sign(
        headers["svix-id"],
        datetime.fromtimestamp(int(headers["svix-timestamp"]), UTC),
        body.decode(),
    )
    headers["svix-signature"] = f"v1a,bm90LXVzZWQ= {rotated} {headers['svix-signature']}"

    result = await provider.handle_webhook(webhook_request(headers, body), webhook_context())

    assert [e.status for e in result.events if isinstance(e, StatusEvent)] == ["sent"]


def _tamper(headers: dict[str, str], body: bytes, how: str) -> tuple[dict[str, str], bytes]:
    headers = dict(headers)
    if how == "body":
        body = body.replace(b"e-1", b"e-2")
    elif how == "id":
        headers["svix-id"] = "msg_forged"
    elif how == "timestamp":
        headers["svix-timestamp"] = str(int(headers["svix-timestamp"]) - 1)
    elif how == "signature":
        headers["svix-signature"] = "v1," + base64.b64encode(b"\0" * 32).decode()
    elif how == "garbage":
        headers["svix-signature"] = "v1,%%%not-base64%%%"
    elif how == "other-version":
        headers["svix-signature"] = headers["svix-signature"].replace("v1,", "v2,")
    elif how.startswith("no-"):
        del headers[how.removeprefix("no-")]
    return headers, body


@pytest.mark.parametrize(
    "how",
    [
        pytest.param("body", id="body-changed"),
        pytest.param("id", id="id-changed"),
        pytest.param("timestamp", id="timestamp-changed"),
        pytest.param("signature", id="wrong-signature"),
        pytest.param("garbage", id="signature-not-base64"),
        pytest.param("other-version", id="only-unknown-versions"),
        pytest.param("no-svix-signature", id="no-signature"),
        pytest.param("no-svix-id", id="no-id"),
        pytest.param("no-svix-timestamp", id="no-timestamp"),
    ],
)
async def test_a_forged_callback_is_refused_as_svix_refuses_it(how: str) -> None:
    headers, body = _tamper(*webhook(SECRET, email_event("email.bounced", "e-1")), how)

    with pytest.raises(WebhookSignatureError) as caught:
        await provider.handle_webhook(webhook_request(headers, body), webhook_context())
    # Svix's verifier lets binascii.Error (a ValueError) out on undecodable signatures.
    with pytest.raises((WebhookVerificationError, ValueError)):
        Webhook(SECRET).verify(body, headers)
    assert_no_secret(caught.value)


@pytest.mark.parametrize(
    ("age", "accepted"),
    [
        pytest.param(timedelta(minutes=4, seconds=50), True, id="4m50s-old"),
        pytest.param(timedelta(minutes=-4, seconds=-50), True, id="4m50s-ahead"),
        pytest.param(timedelta(minutes=5, seconds=10), False, id="5m10s-old"),
        pytest.param(timedelta(minutes=-5, seconds=-10), False, id="5m10s-ahead"),
        pytest.param(timedelta(days=400), False, id="a-year-old"),
    ],
)
async def test_the_timestamp_must_be_within_five_minutes(age: timedelta, accepted: bool) -> None:
    received_at = datetime.now(UTC)
    headers, body = webhook(
        SECRET, email_event("email.delivered", "e-1"), timestamp=received_at - age
    )
    request = webhook_request(headers, body, received_at=received_at)

    if accepted:
        result = await provider.handle_webhook(request, webhook_context())
        assert len(result.events) == 1
    else:
        with pytest.raises(WebhookSignatureError, match="tolerance"):
            await provider.handle_webhook(request, webhook_context())


@pytest.mark.parametrize(
    "value",
    [pytest.param("", id="empty"), pytest.param("1.7e9", id="float"), pytest.param("x", id="text")],
)
async def test_an_unreadable_timestamp_is_refused(value: str) -> None:
    headers, body = webhook(SECRET, email_event("email.delivered", "e-1"))
    headers["svix-timestamp"] = value

    with pytest.raises(WebhookSignatureError):
        await provider.handle_webhook(webhook_request(headers, body), webhook_context())


async def test_a_malformed_secret_is_refused_without_naming_it() -> None:
    credentials = {**CREDENTIALS, "webhookSecret": "whsec_not*base64!"}
    headers, body = webhook(SECRET, email_event("email.delivered", "e-1"))

    with pytest.raises(WebhookSignatureError) as caught:
        await provider.handle_webhook(webhook_request(headers, body), webhook_context(credentials))
    assert "not*base64" not in str(caught.value)


@pytest.mark.parametrize(
    ("event_type", "status", "code"),
    [
        pytest.param("email.sent", "sent", None, id="sent"),
        pytest.param("email.delivered", "delivered", None, id="delivered"),
        pytest.param("email.opened", "read", None, id="opened"),
        pytest.param("email.bounced", "failed", "bounced", id="bounced"),
        pytest.param("email.complained", "failed", "complained", id="complained"),
        pytest.param("email.failed", "failed", "failed", id="failed"),
        pytest.param("email.suppressed", "failed", "suppressed", id="suppressed"),
        pytest.param("email.delivery_delayed", None, None, id="delivery-delayed"),
        pytest.param("email.clicked", None, None, id="clicked"),
        pytest.param("email.scheduled", None, None, id="scheduled"),
    ],
)
async def test_status_mapping(event_type: str, status: str | None, code: str | None) -> None:
    headers, body = webhook(SECRET, email_event(event_type, "e-1"))

    result = await provider.handle_webhook(webhook_request(headers, body), webhook_context())

    assert result.response.status == 200
    statuses = [e for e in result.events if isinstance(e, StatusEvent)]
    if status is None:
        assert result.events == []
        return
    [event] = statuses
    assert (event.status, event.provider_message_id, event.error_code) == (status, "e-1", code)
    assert (event.error_message is not None) == (status == "failed")


@pytest.mark.parametrize(
    ("event_type", "message"),
    [
        pytest.param(
            "email.bounced", "The recipient's email address does not exist.", id="bounce-message"
        ),
        pytest.param("email.failed", "reached_daily_quota", id="failure-reason"),
        pytest.param(
            "email.suppressed", "The address is on the account suppression list.", id="suppressed"
        ),
        pytest.param("email.complained", "the recipient marked the email as spam", id="complaint"),
    ],
)
async def test_failures_carry_resends_reason(event_type: str, message: str) -> None:
    headers, body = webhook(SECRET, email_event(event_type, "e-1"))

    result = await provider.handle_webhook(webhook_request(headers, body), webhook_context())

    [event] = [e for e in result.events if isinstance(e, StatusEvent)]
    assert event.error_message == message


@pytest.mark.parametrize(
    ("event_type", "bounce_type", "reason"),
    [
        pytest.param("email.bounced", "Permanent", "bounce", id="hard-bounce"),
        pytest.param("email.bounced", "Transient", None, id="soft-bounce"),
        pytest.param("email.bounced", "Undetermined", None, id="undetermined-bounce"),
        pytest.param("email.complained", None, "complaint", id="complaint"),
        pytest.param("email.failed", None, None, id="failed"),
        pytest.param("email.suppressed", None, None, id="resends-own-list"),
        pytest.param("email.delivered", None, None, id="delivered"),
    ],
)
async def test_hard_bounces_and_complaints_opt_every_recipient_out(
    event_type: str, bounce_type: str | None, reason: str | None
) -> None:
    """SPEC section 9: the host suppresses what these name, for the tenant and channel."""
    payload = email_event(event_type, "e-1", to=("ana@example.com", "Begoña@Example.com"))
    if bounce_type is not None:
        payload["data"]["bounce"]["type"] = bounce_type
    headers, body = webhook(SECRET, payload)

    result = await provider.handle_webhook(webhook_request(headers, body), webhook_context())

    opt_outs = [e for e in result.events if isinstance(e, RecipientOptOut)]
    if reason is None:
        assert opt_outs == []
        return
    assert [(o.address, o.reason, o.provider_message_id) for o in opt_outs] == [
        ("ana@example.com", reason, "e-1"),
        ("Begoña@Example.com", reason, "e-1"),
    ]


@pytest.mark.parametrize(
    ("message", "detail"),
    [
        pytest.param(
            "The recipient's email address does not exist.",
            "The recipient's email address does not exist.",
            id="as-written",
        ),
        pytest.param(
            "  550 5.1.1 Usuario desconocido ñ \n", "550 5.1.1 Usuario desconocido ñ", id="trimmed"
        ),
        pytest.param("x" * 150 + " " + "y" * 150, "x" * 150 + " " + "y" * 49, id="cut-to-200"),
        pytest.param("   ", None, id="blank"),
        pytest.param(None, None, id="missing"),
    ],
)
async def test_a_hard_bounce_keeps_resends_words_trimmed(
    message: str | None, detail: str | None
) -> None:
    payload = email_event("email.bounced", "e-1", to=("ana@example.com",))
    if message is None:
        del payload["data"]["bounce"]["message"]
    else:
        payload["data"]["bounce"]["message"] = message
    headers, body = webhook(SECRET, payload)

    result = await provider.handle_webhook(webhook_request(headers, body), webhook_context())

    [opt_out] = [e for e in result.events if isinstance(e, RecipientOptOut)]
    assert opt_out.detail == detail


async def test_a_received_email_is_an_inbound_message() -> None:
    payload = email_event(
        "email.received",
        "a39999a6-88e3-48b1-888b-beaabcde1b33",
        sender="Begoña Ruiz <begona@example.com>",
        to=("reservas@tableflow.com",),
        subject="Re: ¿Puedo cambiar la hora? 🙏",
    )
    headers, body = webhook(SECRET, payload)

    result = await provider.handle_webhook(webhook_request(headers, body), webhook_context())

    assert result.events == [
        InboundMessage(
            sender="begona@example.com",
            recipient="reservas@tableflow.com",
            body="",
            provider_message_id="a39999a6-88e3-48b1-888b-beaabcde1b33",
            subject="Re: ¿Puedo cambiar la hora? 🙏",
            occurred_at=datetime.fromisoformat(payload["created_at"]),
        )
    ]


RECEIVED_ID = "a39999a6-88e3-48b1-888b-beaabcde1b33"
RECEIVED_TEXT = "Hola, ¿podemos pasar la reserva a las 21:30? Somos 4 🍷\n\nBegoña"


def received_webhook() -> tuple[dict[str, str], bytes]:
    return webhook(
        SECRET,
        email_event(
            "email.received",
            RECEIVED_ID,
            sender="Begoña Ruiz <begona@example.com>",
            to=("reservas@tableflow.com",),
            subject="Re: ¿Puedo cambiar la hora? 🙏",
        ),
    )


def fetching_context(client: httpx.AsyncClient, url: str) -> WebhookContext:
    return WebhookContext(
        tenant_id="tableflow_123",
        channel="email",
        credentials=CREDENTIALS,
        http=client,
        base_url=url,
        timeout=2.0,
    )


async def received_inbound(
    fake: FakeResend, client: httpx.AsyncClient | None = None
) -> InboundMessage:
    """Hand the provider a signed email.received with a context that fetches from ``fake``;
    returns the one event it gives (raises what the provider raises)."""
    headers, body = received_webhook()
    async with contextlib.AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(outbound_client(max_connections=2, timeout=2))
        result = await provider.handle_webhook(
            webhook_request(headers, body), fetching_context(client, fake.url)
        )
    [inbound] = result.events
    assert isinstance(inbound, InboundMessage)
    return inbound


async def test_a_received_emails_body_is_fetched_from_resend(
    fake: FakeResend, any_client: httpx.AsyncClient
) -> None:
    fake.receive(RECEIVED_ID, text=RECEIVED_TEXT, html="<p>Hola</p>", subject="ignored")

    inbound = await received_inbound(fake, any_client)

    assert (inbound.body, inbound.subject) == (RECEIVED_TEXT, "Re: ¿Puedo cambiar la hora? 🙏")
    [call] = fake.requests
    assert (call.method, call.path) == ("GET", f"/emails/receiving/{RECEIVED_ID}")
    assert call.headers["authorization"] == f"Bearer {API_KEY}"


async def test_a_received_email_without_text_gives_its_html(fake: FakeResend) -> None:
    fake.receive(RECEIVED_ID, text=None, html="<p>¿Mesa para 4? 🍽️</p>")
    assert (await received_inbound(fake)).body == "<p>¿Mesa para 4? 🍽️</p>"


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, "internal_server_error"), (429, "rate_limit_exceeded"), (401, "missing_api_key")],
)
async def test_a_failed_fetch_resend_may_get_over_is_raised_for_a_retry(
    fake: FakeResend, status: int, code: str
) -> None:
    fake.receive(RECEIVED_ID, text=RECEIVED_TEXT)
    fake.fail_next(status, message=f"no: {API_KEY}")
    with pytest.raises(ProviderError) as raised:
        await received_inbound(fake)
    assert (raised.value.code, raised.value.http_status) == (code, status)
    assert API_KEY not in str(raised.value)


async def test_a_received_email_resend_does_not_know_is_kept_without_its_body(
    fake: FakeResend,
) -> None:
    inbound = await received_inbound(fake)
    assert (inbound.provider_message_id, inbound.body) == (RECEIVED_ID, "")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"type": "contact.created", "created_at": "x", "data": {}}, id="contact"),
        pytest.param({"type": "domain.updated", "created_at": "x", "data": {}}, id="domain"),
    ],
)
async def test_events_about_other_things_are_acknowledged(payload: dict[str, Any]) -> None:
    headers, body = webhook(SECRET, payload)

    result = await provider.handle_webhook(webhook_request(headers, body), webhook_context())

    assert result.events == []
    assert result.response.status == 200


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[]", id="array"),
        pytest.param(b'{"type": "email.sent"}', id="no-data"),
        pytest.param(b'{"type": "email.sent", "data": {"to": ["a@b.c"]}}', id="no-email-id"),
        pytest.param(
            b'{"type": "email.received", "data": {"email_id": "e"}}', id="inbound-no-from"
        ),
    ],
)
async def test_a_signed_but_malformed_body_is_a_payload_error(body: bytes) -> None:
    headers, body = webhook(SECRET, body)
    with pytest.raises(WebhookPayloadError):
        await provider.handle_webhook(webhook_request(headers, body), webhook_context())


# Attachments (SPEC section 7): each request checked against Resend's document

PDF = b"%PDF-1.4\n% factura \xc3\xb1\n"


async def test_attachments_go_as_base64_content_or_a_path(
    fake: FakeResend, http: httpx.AsyncClient
) -> None:
    message = replace(
        email(),
        attachments=(
            Attachment("factura.pdf", content=PDF, content_type="application/pdf"),
            Attachment("menu.pdf", url="https://files.example.com/menu.pdf"),
        ),
    )
    await provider.send(message, send_context(http, fake.url))
    sent = json.loads(fake.requests[0].body)
    assert sent["attachments"] == [
        {
            "filename": "factura.pdf",
            "content": base64.b64encode(PDF).decode(),
            "content_type": "application/pdf",
        },
        {"filename": "menu.pdf", "path": "https://files.example.com/menu.pdf"},
    ]


def test_attachments_over_resends_limit_are_refused_at_accept_time() -> None:
    big = replace(email(), attachments=(Attachment("big.bin", content=b"x" * 30_000_001),))
    with pytest.raises(MessageRejected) as refused:
        provider.check_message(big, CREDENTIALS)
    assert refused.value.field == "attachments"
    assert "40 MB" in refused.value.message
