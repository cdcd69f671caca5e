"""The Twilio provider against a loopback fake of Twilio's Messages API.

Every request the plugin sends is checked against Twilio's own OpenAPI document, and every
webhook signature is made by Twilio's own ``RequestValidator``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode

import httpx
import pipecored_twilio
import pytest
from pipecored_twilio import TwilioProvider
from twilio.request_validator import RequestValidator

from pipecored import (
    InboundMedia,
    InboundMessage,
    Media,
    MessageRejected,
    OutboundMessage,
    Provider,
    ProviderError,
    SendContext,
    StatusEvent,
    TemplateRef,
    WebhookContext,
    WebhookPayloadError,
    WebhookRequest,
    WebhookSignatureError,
)
from pipecored.testing import ProviderContract, Reply, ScriptedFake, WebhookContract
from tests.fakes import twilio as twilio_fake
from tests.fakes.twilio import (
    FakeTwilio,
    SignedWebhook,
    inbound_params,
    sign_form,
    sign_json,
    status_callback_params,
)
from tests.plugins.support import send_context

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "9f86d081884c7d659a2feaa0c55ad015"
OTHER_AUTH_TOKEN = "5e884898da28047151d0e56f8dc62927"  # another tenant's
STALE_AUTH_TOKEN = "2c26b46b68ffc68ff99b453c1d304134"  # this tenant's token before rotation
SMS_NUMBER = "+14155550123"
WHATSAPP_NUMBER = "+14155238886"
SERVICE_SID = "MG0123456789abcdef0123456789abcdef"
CUSTOMER = "+34600111222"
CALLBACK = (
    "https://pipecore.example.com/messaging/webhook/sms?tenant_id=tableflow_123&provider=twilio"
)
WEBHOOK_URL = CALLBACK
OTHER_TENANT_URL = (
    "https://pipecore.example.com/messaging/webhook/sms?tenant_id=genda_456&provider=twilio"
)
SPANISH = "¡Hola, Begoña! Tu reserva está confirmada 🎉\nMañana a las 20:30 🍷 — ñandú"

SMS_CREDENTIALS = {"accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN, "phoneNumber": SMS_NUMBER}
WHATSAPP_CREDENTIALS = {
    "accountSid": ACCOUNT_SID,
    "authToken": AUTH_TOKEN,
    "whatsappNumber": "whatsapp:" + WHATSAPP_NUMBER,
}

provider = TwilioProvider()


@pytest.fixture(scope="session")  # one server for the run, however the tests are ordered
def shared_fake() -> Iterator[FakeTwilio]:
    with FakeTwilio({ACCOUNT_SID: AUTH_TOKEN}) as server:
        yield server


def context(
    http: httpx.AsyncClient,
    base_url: str,
    *,
    channel: str = "sms",
    credentials: Mapping[str, str] | None = None,
    timeout: float = 5.0,
    callback: str | None = CALLBACK,
) -> SendContext:
    if credentials is None:
        credentials = WHATSAPP_CREDENTIALS if channel == "whatsapp" else SMS_CREDENTIALS
    return send_context(
        http,
        base_url,
        tenant_id="tableflow_123",
        channel=channel,
        credentials=credentials,
        timeout=timeout,
        status_callback_url=callback,
    )


def message(
    *,
    channel: str = "sms",
    to: tuple[str, ...] = (CUSTOMER,),
    body: str | None = "Hola",
    sender: str | None = None,
) -> OutboundMessage:
    return OutboundMessage(
        id="msg_1", tenant_id="tableflow_123", channel=channel, to=to, body=body, sender=sender
    )


def received_form(fake: FakeTwilio) -> dict[str, str]:
    (request,) = fake.requests
    return {k: v[0] for k, v in parse_qs(request.body.decode("utf-8")).items()}


def basic_authorization(token: str) -> str:
    return base64.b64encode(f"{ACCOUNT_SID}:{token}".encode()).decode()


def assert_no_secret(exc: BaseException) -> None:
    for secret in (AUTH_TOKEN, basic_authorization(AUTH_TOKEN)):
        assert secret not in str(exc)
        assert secret not in repr(exc)


def webhook_context(credentials: Mapping[str, str] = SMS_CREDENTIALS) -> WebhookContext:
    return WebhookContext(tenant_id="tableflow_123", channel="sms", credentials=credentials)


async def deliver(signed: SignedWebhook, *, url: str | None = None) -> list[Any]:
    request = signed.webhook_request()
    if url is not None:
        request = WebhookRequest(
            method=request.method,
            url=url,
            headers=request.headers,
            query=request.query,
            body=request.body,
            received_at=request.received_at,
        )
    result = await provider.handle_webhook(request, webhook_context())
    assert result.response.status == 200
    return list(result.events)


class TestTwilioContract(ProviderContract, WebhookContract):
    provider = provider
    channel = "sms"
    credentials = SMS_CREDENTIALS
    wrong_credentials = {**SMS_CREDENTIALS, "authToken": STALE_AUTH_TOKEN}
    wrong_credentials_code = "20003"
    # Twilio took the message; sending again could text the customer twice.
    answer_without_id = "failed"
    # A 500 does not say whether the message was created (errors.py).
    retried_statuses = frozenset({429, 502, 503, 504})
    unavailable_statuses = frozenset({401})
    status_callback_url = CALLBACK

    def start_fake(self) -> ScriptedFake:
        return FakeTwilio({ACCOUNT_SID: AUTH_TOKEN}).start()

    def message(self) -> OutboundMessage:
        return message()

    def error_reply(self, status: int, text: str) -> Reply:
        return twilio_fake.error_reply(status, message=text)

    def reply_without_id(self) -> Reply:
        return Reply(201, b"{}")

    def secret_texts(self) -> list[str]:
        tokens = (AUTH_TOKEN, STALE_AUTH_TOKEN)
        return [*super().secret_texts(), *(basic_authorization(t) for t in tokens)]

    # The webhook contract: how the provider signs a callback.

    signing_credential = "authToken"
    signature_headers = ("x-twilio-signature",)

    def callback_body(self) -> bytes:
        return urlencode(sms_status("delivered")).encode()

    def sign(self, body: bytes) -> SignedWebhook:
        return sign_form(
            WEBHOOK_URL, AUTH_TOKEN, dict(parse_qsl(body.decode(), keep_blank_values=True))
        )

    def sign_for_another_tenant(self, body: bytes) -> SignedWebhook:
        params = dict(parse_qsl(body.decode(), keep_blank_values=True))
        return sign_form(WEBHOOK_URL, OTHER_AUTH_TOKEN, params)


# Registration


def test_registers_the_twilio_provider() -> None:
    registered: list[Provider] = []
    pipecored_twilio.register_providers(register=registered.append)
    (twilio,) = registered
    assert isinstance(twilio, TwilioProvider)
    assert twilio.name == "twilio"
    assert twilio.channels == {"sms", "whatsapp"}
    assert twilio.default_base_url == "https://api.twilio.com"
    assert twilio.secret_names() == {"authToken"}
    fields = {f.name: f for f in twilio.credentials}
    assert fields["phoneNumber"].required_for("sms")
    assert not fields["phoneNumber"].required_for("whatsapp")
    assert fields["whatsappNumber"].required_for("whatsapp")
    assert not fields["whatsappNumber"].required_for("sms")
    assert not fields["messagingServiceSid"].required_for("sms")
    assert fields["accountSid"].required_for("sms") and fields["authToken"].required_for("sms")


# Sending


async def test_sends_sms_as_twilio_documents_it(fake: FakeTwilio, http: httpx.AsyncClient) -> None:
    result = await provider.send(message(body=SPANISH), context(http, fake.url))

    (sent,) = fake.messages
    assert result.provider_message_id == sent.sid
    assert result.provider_message_id.startswith("SM")
    assert result.status == "sent"
    assert result.http_status == 201
    (request,) = fake.requests
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    credentials = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {credentials}"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert received_form(fake) == {
        "To": CUSTOMER,
        "From": SMS_NUMBER,
        "Body": SPANISH,
        "StatusCallback": CALLBACK,
    }
    assert sent.body.encode("utf-8") == SPANISH.encode("utf-8")


async def test_leaves_status_callback_out_without_a_public_url(
    fake: FakeTwilio, http: httpx.AsyncClient
) -> None:
    await provider.send(message(), context(http, fake.url, callback=None))
    assert "StatusCallback" not in received_form(fake)


@pytest.mark.parametrize(
    ("configured", "to"),
    [
        pytest.param(WHATSAPP_NUMBER, CUSTOMER, id="bare-numbers"),
        pytest.param("whatsapp:" + WHATSAPP_NUMBER, CUSTOMER, id="configured-prefixed"),
        pytest.param(WHATSAPP_NUMBER, "whatsapp:" + CUSTOMER, id="recipient-prefixed"),
        pytest.param("whatsapp:" + WHATSAPP_NUMBER, "whatsapp:" + CUSTOMER, id="both-prefixed"),
    ],
)
async def test_whatsapp_addresses_carry_one_prefix(
    fake: FakeTwilio, http: httpx.AsyncClient, configured: str, to: str
) -> None:
    credentials = {**WHATSAPP_CREDENTIALS, "whatsappNumber": configured}
    ctx = context(http, fake.url, channel="whatsapp", credentials=credentials)
    await provider.send(message(channel="whatsapp", to=(to,), body=SPANISH), ctx)
    form = received_form(fake)
    assert form["To"] == "whatsapp:" + CUSTOMER
    assert form["From"] == "whatsapp:" + WHATSAPP_NUMBER
    assert form["Body"] == SPANISH


@pytest.mark.parametrize(
    "channel", [pytest.param("sms", id="sms"), pytest.param("whatsapp", id="whatsapp")]
)
async def test_messaging_service_replaces_from(
    fake: FakeTwilio, http: httpx.AsyncClient, channel: str
) -> None:
    base = WHATSAPP_CREDENTIALS if channel == "whatsapp" else SMS_CREDENTIALS
    credentials = {**base, "messagingServiceSid": SERVICE_SID}
    ctx = context(http, fake.url, channel=channel, credentials=credentials)
    result = await provider.send(message(channel=channel), ctx)
    form = received_form(fake)
    assert form["MessagingServiceSid"] == SERVICE_SID
    assert "From" not in form
    assert result.provider_message_id == fake.messages[0].sid


async def test_sender_override_sends_from_the_configured_number(
    fake: FakeTwilio, http: httpx.AsyncClient
) -> None:
    credentials = {**SMS_CREDENTIALS, "messagingServiceSid": SERVICE_SID}
    ctx = context(http, fake.url, credentials=credentials)
    await provider.send(message(sender=SMS_NUMBER), ctx)
    form = received_form(fake)
    assert form["From"] == SMS_NUMBER
    assert "MessagingServiceSid" not in form


async def test_sender_no_longer_configured_is_refused_without_a_call(
    fake: FakeTwilio, http: httpx.AsyncClient
) -> None:
    with pytest.raises(ProviderError) as caught:
        await provider.send(message(sender="+14155559999"), context(http, fake.url))
    assert caught.value.code == "sender_not_allowed"
    assert not caught.value.retryable
    assert fake.requests == []


async def test_missing_credential_is_named_and_fails_over(
    fake: FakeTwilio, http: httpx.AsyncClient
) -> None:
    credentials = {"accountSid": ACCOUNT_SID, "phoneNumber": SMS_NUMBER}
    with pytest.raises(ProviderError) as caught:
        await provider.send(message(), context(http, fake.url, credentials=credentials))
    assert caught.value.code == "missing_credential"
    assert "authToken" in caught.value.message
    assert caught.value.unavailable and not caught.value.retryable
    assert fake.requests == []


# Accept-time checks


@pytest.mark.parametrize(
    ("channel", "sender"),
    [
        pytest.param("sms", SMS_NUMBER, id="sms-number"),
        pytest.param("sms", " +1 415 555 0123 ", id="sms-number-spaced"),
        pytest.param("whatsapp", WHATSAPP_NUMBER, id="whatsapp-bare"),
        pytest.param("whatsapp", "whatsapp:" + WHATSAPP_NUMBER, id="whatsapp-prefixed"),
        pytest.param("sms", None, id="no-override"),
    ],
)
def test_check_message_accepts_the_configured_sender(channel: str, sender: str | None) -> None:
    credentials = WHATSAPP_CREDENTIALS if channel == "whatsapp" else SMS_CREDENTIALS
    provider.check_message(message(channel=channel, sender=sender), credentials)


@pytest.mark.parametrize(
    ("msg", "credentials", "field"),
    [
        pytest.param(message(sender="+14155559999"), SMS_CREDENTIALS, "from", id="other-number"),
        pytest.param(
            message(channel="whatsapp", sender=SMS_NUMBER),
            WHATSAPP_CREDENTIALS,
            "from",
            id="sms-number-on-whatsapp",
        ),
        pytest.param(
            message(sender=SMS_NUMBER),
            {
                "accountSid": ACCOUNT_SID,
                "authToken": AUTH_TOKEN,
                "messagingServiceSid": SERVICE_SID,
            },
            "from",
            id="service-only-tenant",
        ),
        pytest.param(
            message(to=(CUSTOMER, "+34600333444")), SMS_CREDENTIALS, "to", id="two-recipients"
        ),
        pytest.param(message(to=()), SMS_CREDENTIALS, "to", id="no-recipient"),
        pytest.param(message(body=""), SMS_CREDENTIALS, "body", id="empty-body"),
    ],
)
def test_check_message_refuses(
    msg: OutboundMessage, credentials: Mapping[str, str], field: str
) -> None:
    with pytest.raises(MessageRejected) as caught:
        provider.check_message(msg, credentials)
    assert caught.value.field == field


# Errors


# Answers without Twilio's error JSON (a 502 page, an empty 504): the contract's cases.
@pytest.mark.parametrize(
    ("status", "code", "retryable", "unavailable", "expected_code", "says"),
    [
        pytest.param(400, 21211, False, False, "21211", "not a valid", id="invalid-number"),
        pytest.param(400, 21614, False, False, "21614", "mobile", id="not-mobile"),
        pytest.param(401, 20003, False, True, "20003", "credentials", id="auth-20003"),
        pytest.param(429, 20429, True, False, "20429", "Too Many", id="rate-limit-429"),
        pytest.param(503, 20503, True, False, "20503", "Unavailable", id="unavailable-503"),
        pytest.param(
            400, 63016, False, False, "template_required", "template", id="outside-window"
        ),
        pytest.param(400, 21611, False, True, "21611", "queued", id="queue-quota"),
        pytest.param(429, 63038, False, True, "63038", "daily", id="daily-quota"),
        pytest.param(500, 20500, False, False, "20500", "not retried", id="500-not-retried"),
        pytest.param(404, 20404, False, False, "20404", "not found", id="not-found"),
    ],
)
async def test_classifies_twilio_errors(
    fake: FakeTwilio,
    http: httpx.AsyncClient,
    status: int,
    code: int,
    retryable: bool,
    unavailable: bool,
    expected_code: str,
    says: str,
) -> None:
    fake.fail_next(status=status, code=code)

    with pytest.raises(ProviderError) as caught:
        await provider.send(
            message(channel="whatsapp"), context(http, fake.url, channel="whatsapp")
        )

    error = caught.value
    assert type(error) is ProviderError
    assert error.provider == "twilio"
    assert error.code == expected_code
    assert error.http_status == status
    assert error.retryable is retryable
    assert error.unavailable is unavailable
    assert says.lower() in error.message.lower()
    assert_no_secret(error)
    assert fake.messages == []


# Webhooks: signatures


def sms_status(status: str, **extra: str) -> dict[str, str]:
    return status_callback_params(
        message_sid="SM0123456789abcdef0123456789abcdef",
        status=status,
        account_sid=ACCOUNT_SID,
        to=CUSTOMER,
        from_=SMS_NUMBER,
        **extra,
    )


async def test_signed_status_callback_is_applied() -> None:
    events = await deliver(sign_form(WEBHOOK_URL, AUTH_TOKEN, sms_status("delivered")))
    assert events == [
        StatusEvent(status="delivered", provider_message_id="SM0123456789abcdef0123456789abcdef")
    ]


async def test_answers_empty_twiml() -> None:
    signed = sign_form(WEBHOOK_URL, AUTH_TOKEN, sms_status("sent"))
    result = await provider.handle_webhook(signed.webhook_request(), webhook_context())
    assert result.response.status == 200
    assert result.response.body == b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
    assert result.response.content_type == "text/xml"


def _tampered(signed: SignedWebhook) -> SignedWebhook:
    body = signed.body.replace(b"delivered", b"failed")
    assert body != signed.body
    return SignedWebhook(signed.method, signed.url, signed.headers, body)


def _header(signed: SignedWebhook, value: str | None) -> SignedWebhook:
    headers = {k: v for k, v in signed.headers.items() if k != "x-twilio-signature"}
    if value is not None:
        headers["x-twilio-signature"] = value
    return SignedWebhook(signed.method, signed.url, headers, signed.body)


_GOOD = sign_form(WEBHOOK_URL, AUTH_TOKEN, sms_status("delivered"))


@pytest.mark.parametrize(
    ("signed", "url"),
    [
        pytest.param(_header(_GOOD, "bm90IGEgc2lnbmF0dXJlIGF0IGFsbA=="), None, id="forged"),
        pytest.param(_tampered(_GOOD), None, id="tampered-body"),
        pytest.param(_header(_GOOD, None), None, id="unsigned"),
        pytest.param(_header(_GOOD, ""), None, id="empty-signature"),
        pytest.param(_header(_GOOD, "sïgnature"), None, id="non-ascii-signature"),
        pytest.param(
            sign_form(WEBHOOK_URL, STALE_AUTH_TOKEN, sms_status("delivered")),
            None,
            id="stale-token",
        ),
        pytest.param(
            sign_form(WEBHOOK_URL, OTHER_AUTH_TOKEN, sms_status("delivered")),
            None,
            id="other-tenants-token",
        ),
        pytest.param(
            sign_form(OTHER_TENANT_URL, AUTH_TOKEN, sms_status("delivered")),
            WEBHOOK_URL,
            id="signed-for-another-url",
        ),
        pytest.param(
            sign_form(WEBHOOK_URL.replace("https:", "http:"), AUTH_TOKEN, sms_status("read")),
            WEBHOOK_URL,
            id="signed-for-another-scheme",
        ),
    ],
)
async def test_refuses_unverified_webhooks(signed: SignedWebhook, url: str | None) -> None:
    with pytest.raises(WebhookSignatureError) as caught:
        await deliver(signed, url=url)
    assert AUTH_TOKEN not in str(caught.value)
    assert OTHER_AUTH_TOKEN not in str(caught.value)


async def test_refuses_a_body_that_is_not_a_form() -> None:
    signed = SignedWebhook("POST", WEBHOOK_URL, dict(_GOOD.headers), b"Body=%ff%fe")
    with pytest.raises(WebhookSignatureError):
        await deliver(signed)


@pytest.mark.parametrize(
    ("signed_url", "called_url"),
    [
        pytest.param(WEBHOOK_URL.replace(".com/", ".com:443/"), WEBHOOK_URL, id="signed-with-port"),
        pytest.param(WEBHOOK_URL, WEBHOOK_URL.replace(".com/", ".com:443/"), id="called-with-port"),
    ],
)
async def test_accepts_either_form_of_the_default_port(signed_url: str, called_url: str) -> None:
    events = await deliver(sign_form(signed_url, AUTH_TOKEN, sms_status("read")), url=called_url)
    assert [e.status for e in events] == ["read"]


class _MultiDict(dict[str, list[str]]):
    """The shape Twilio's RequestValidator reads repeated parameters from (Django's QueryDict)."""

    def getlist(self, name: str) -> list[str]:
        return self[name]


async def test_repeated_parameters_are_signed_as_twilio_does() -> None:
    params = [
        *sms_status("sent").items(),
        ("MediaUrl", "https://b.example/2"),
        ("MediaUrl", "https://a.example/1"),
    ]
    grouped = _MultiDict()
    for name, value in params:
        grouped.setdefault(name, []).append(value)
    signature = RequestValidator(AUTH_TOKEN).compute_signature(WEBHOOK_URL, grouped)
    body = str(httpx.QueryParams(params)).encode("ascii")
    signed = SignedWebhook("POST", WEBHOOK_URL, {"x-twilio-signature": signature}, body)
    events = await deliver(signed)
    assert [e.status for e in events] == ["sent"]


async def test_json_body_signed_with_body_sha256() -> None:
    signed = sign_json(WEBHOOK_URL, AUTH_TOKEN, sms_status("delivered"))
    assert "bodySHA256=" in signed.url
    assert RequestValidator(AUTH_TOKEN).validate(
        signed.url, signed.body.decode(), signed.headers["x-twilio-signature"]
    )
    events = await deliver(signed)
    assert [(e.status, e.provider_message_id) for e in events] == [
        ("delivered", "SM0123456789abcdef0123456789abcdef")
    ]


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda s: SignedWebhook(s.method, s.url, s.headers, s.body + b" "), id="body"),
        pytest.param(
            lambda s: SignedWebhook(
                s.method, s.url.replace("bodySHA256=", "bodySHA256=0"), s.headers, s.body
            ),
            id="hash-in-url",
        ),
        pytest.param(
            lambda s: SignedWebhook(s.method, s.url.split("&bodySHA256=")[0], s.headers, s.body),
            id="hash-removed",
        ),
        pytest.param(lambda s: _header(s, None), id="unsigned"),
    ],
)
async def test_json_body_refused_when_tampered(mutate: Any) -> None:
    signed = sign_json(WEBHOOK_URL, AUTH_TOKEN, sms_status("delivered"))
    with pytest.raises(WebhookSignatureError):
        await deliver(mutate(signed))


async def test_json_body_that_is_not_json_is_a_payload_error() -> None:
    signed = sign_json(WEBHOOK_URL, AUTH_TOKEN, b"{not json")
    with pytest.raises(WebhookPayloadError):
        await deliver(signed)


async def test_get_webhook_is_signed_over_its_query() -> None:
    params = httpx.QueryParams(sms_status("delivered"))
    url = f"{WEBHOOK_URL}&{params}"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, {})
    events = await deliver(SignedWebhook("GET", url, {"x-twilio-signature": signature}))
    assert [e.status for e in events] == ["delivered"]
    with pytest.raises(WebhookSignatureError):
        await deliver(SignedWebhook("GET", url + "&x=1", {"x-twilio-signature": signature}))


async def test_signed_callback_without_message_sid_is_a_payload_error() -> None:
    params = {k: v for k, v in sms_status("sent").items() if k not in ("MessageSid", "SmsSid")}
    with pytest.raises(WebhookPayloadError):
        await deliver(sign_form(WEBHOOK_URL, AUTH_TOKEN, params))


# Webhooks: what they say


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param("queued", None, id="queued"),
        pytest.param("accepted", None, id="accepted"),
        pytest.param("scheduled", None, id="scheduled"),
        pytest.param("sending", None, id="sending"),
        pytest.param("sent", "sent", id="sent"),
        pytest.param("delivered", "delivered", id="delivered"),
        pytest.param("read", "read", id="read"),
        pytest.param("undelivered", "failed", id="undelivered"),
        pytest.param("failed", "failed", id="failed"),
        pytest.param("canceled", "failed", id="canceled"),
        pytest.param("some_future_status", None, id="unknown"),
    ],
)
async def test_maps_twilio_statuses(status: str, expected: str | None) -> None:
    events = await deliver(sign_form(WEBHOOK_URL, AUTH_TOKEN, sms_status(status)))
    assert [e.status for e in events] == ([expected] if expected else [])


@pytest.mark.parametrize(
    ("extra", "code", "text"),
    [
        pytest.param(
            {"error_code": "30003", "error_message": "Unreachable destination handset"},
            "30003",
            "Unreachable destination handset",
            id="code-and-message",
        ),
        pytest.param({"error_code": "30007"}, "30007", "filtered", id="known-code-only"),
        pytest.param({"error_code": "63016"}, "template_required", "template", id="outside-window"),
        pytest.param({"error_code": "39999"}, "39999", "undelivered", id="unknown-code-only"),
        pytest.param({}, None, "undelivered", id="no-code"),
    ],
)
async def test_failed_status_carries_the_error(
    extra: dict[str, str], code: str | None, text: str
) -> None:
    (event,) = await deliver(sign_form(WEBHOOK_URL, AUTH_TOKEN, sms_status("undelivered", **extra)))
    assert isinstance(event, StatusEvent)
    assert event.status == "failed"
    assert event.error_code == code
    assert event.error_message is not None and text in event.error_message


@pytest.mark.parametrize(
    ("channel", "to", "from_"),
    [
        pytest.param("whatsapp", WHATSAPP_NUMBER, CUSTOMER, id="whatsapp"),
        pytest.param("sms", SMS_NUMBER, CUSTOMER, id="sms"),
    ],
)
async def test_inbound_message_keeps_its_text(channel: str, to: str, from_: str) -> None:
    params = inbound_params(
        body=SPANISH, from_=from_, to=to, account_sid=ACCOUNT_SID, channel=channel
    )
    (event,) = await deliver(sign_form(WEBHOOK_URL, AUTH_TOKEN, params))
    assert event == InboundMessage(
        sender=CUSTOMER, recipient=to, body=SPANISH, provider_message_id=params["MessageSid"]
    )
    assert event.body.encode("utf-8") == SPANISH.encode("utf-8")


async def test_inbound_media_are_the_messages_files_not_a_placeholder_text() -> None:
    params = inbound_params(body="", from_=CUSTOMER, to=SMS_NUMBER, account_sid=ACCOUNT_SID)
    params.update(
        NumMedia="2",
        MediaContentType0="image/jpeg",
        MediaUrl0="https://m.example/1",
        MediaContentType1="application/pdf",
        MediaUrl1="https://m.example/2",
    )
    (event,) = await deliver(sign_form(WEBHOOK_URL, AUTH_TOKEN, params))
    assert isinstance(event, InboundMessage)
    assert event.body == ""
    assert event.media == (
        InboundMedia("image", "image/jpeg", url="https://m.example/1"),
        InboundMedia("document", "application/pdf", url="https://m.example/2"),
    )


async def test_status_callback_round_trip_through_the_fake(
    http: httpx.AsyncClient, fake: FakeTwilio
) -> None:
    await provider.send(message(), context(http, fake.url))
    (sent,) = fake.messages
    (event,) = await deliver(fake.status_callback(sent, "undelivered", error_code="30005"))
    assert event == StatusEvent(
        status="failed",
        provider_message_id=sent.sid,
        error_code="30005",
        error_message="unknown destination handset",
    )


# Templates and media (SPEC section 7): the request checked against Twilio's document


async def test_a_template_goes_as_content_sid_with_its_variables(
    fake: FakeTwilio, http: httpx.AsyncClient
) -> None:
    templated = replace(
        message(channel="whatsapp", body="Hola Ana, tu pedido está confirmado para las 20:30."),
        template=TemplateRef("order_confirmation", "es", {"1": "Ana", "2": "20:30"}),
    )
    ctx = replace(
        context(http, fake.url, channel="whatsapp"),
        template={"contentSid": "HXb5b62575e6e4ff6129ad7c8efe1f983e"},
    )
    await provider.send(templated, ctx)
    form = received_form(fake)
    assert form["ContentSid"] == "HXb5b62575e6e4ff6129ad7c8efe1f983e"
    assert json.loads(form["ContentVariables"]) == {"1": "Ana", "2": "20:30"}
    assert "Body" not in form


async def test_without_a_mapping_the_templates_text_is_the_body(
    fake: FakeTwilio, http: httpx.AsyncClient
) -> None:
    text = "Hola Ana, tu pedido está confirmado para las 20:30."
    templated = replace(message(body=text), template=TemplateRef("order_confirmation", "es", {}))
    await provider.send(templated, context(http, fake.url))
    form = received_form(fake)
    assert form["Body"] == text
    assert "ContentSid" not in form


async def test_media_go_as_media_urls(fake: FakeTwilio, http: httpx.AsyncClient) -> None:
    mms = replace(
        message(body="Tu menú 🍽️"),
        media=(
            Media("https://files.example.com/menu.jpg"),
            Media("https://files.example.com/b.png"),
        ),
    )
    await provider.send(mms, context(http, fake.url))
    (request,) = fake.requests
    sent = parse_qs(request.body.decode("utf-8"))
    assert sent["MediaUrl"] == [
        "https://files.example.com/menu.jpg",
        "https://files.example.com/b.png",
    ]
    assert sent["Body"] == ["Tu menú 🍽️"]
