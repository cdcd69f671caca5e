"""The Meta (WhatsApp Cloud API) provider against a loopback fake of the Cloud API.

Every request the plugin sends is checked against Meta's own OpenAPI document by the fake as it
arrives (strict, with each ``allOf`` merged: ``tests/fakes/meta.py`` says why). Meta publishes no
library for its webhook signature, so the tests compute ``X-Hub-Signature-256`` from Meta's
documented recipe.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pipecored_meta
import pytest
from openapi_core.validation.request.exceptions import (
    RequestBodyValidationError,
    SecurityValidationError,
)
from pipecored_meta import MetaProvider

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
    WebhookSignatureError,
)
from pipecored.testing import (
    ProviderContract,
    RecordedRequest,
    Reply,
    RequestViolation,
    ScriptedFake,
    WebhookContract,
)
from tests.fakes import meta as meta_fake
from tests.fakes.meta import (
    FakeMeta,
    SignedWebhook,
    change,
    inbound,
    notification,
    signed_notification,
    status,
    status_error,
    subscription_check,
    validate_meta_request,
)
from tests.plugins.support import send_context

ACCESS_TOKEN = "EAAGm0PX4ZCpsBAKZCsecretaccesstokenvalue"
PHONE_NUMBER_ID = "106540352242922"
OTHER_PHONE_NUMBER_ID = "109876543210987"
DISPLAY_NUMBER = "15550001234"
VERIFY_TOKEN = "verify-me-tableflow-5d41402abc4b"
APP_SECRET = "c4ca4238a0b923820dcc509a6f75849b"
OTHER_APP_SECRET = "c81e728d9d4c2f636f067f89cc14862c"  # another tenant's app
STALE_APP_SECRET = "eccbc87e4b5ce2fe28308fd9f2a7baf3"  # this tenant's secret before rotation
CUSTOMER = "+34600111222"
SPANISH = "¡Hola, Begoña! Tu reserva está confirmada 🎉\nMañana a las 20:30 🍷 — ñandú"
WEBHOOK_URL = (
    "https://pipecore.example.com/messaging/webhook/whatsapp?tenant_id=tableflow_123&provider=meta"
)
SECRETS = (ACCESS_TOKEN, VERIFY_TOKEN, APP_SECRET)

CREDENTIALS = {
    "accessToken": ACCESS_TOKEN,
    "phoneNumberId": PHONE_NUMBER_ID,
    "verifyToken": VERIFY_TOKEN,
    "appSecret": APP_SECRET,
}

provider = MetaProvider()


@pytest.fixture(scope="session")  # one server for the run, however the tests are ordered
def shared_fake() -> Iterator[FakeMeta]:
    with FakeMeta({PHONE_NUMBER_ID: ACCESS_TOKEN}) as server:
        yield server


def context(
    http: httpx.AsyncClient,
    base_url: str,
    *,
    credentials: Mapping[str, str] = CREDENTIALS,
    timeout: float = 5.0,
    settings: Mapping[str, str] | None = None,
) -> SendContext:
    return send_context(
        http,
        base_url,
        tenant_id="tableflow_123",
        channel="whatsapp",
        credentials=credentials,
        timeout=timeout,
        status_callback_url=WEBHOOK_URL,
        settings=dict(provider.default_settings) if settings is None else settings,
    )


def message(
    *, to: tuple[str, ...] = (CUSTOMER,), body: str | None = "Hola", sender: str | None = None
) -> OutboundMessage:
    return OutboundMessage(
        id="msg_1", tenant_id="tableflow_123", channel="whatsapp", to=to, body=body, sender=sender
    )


def received_json(fake: FakeMeta) -> Any:
    (request,) = fake.requests
    return json.loads(request.body.decode("utf-8"))


def assert_no_secret(exc: BaseException) -> None:
    for secret in SECRETS:
        assert secret not in str(exc)
        assert secret not in repr(exc)


def webhook_context(credentials: Mapping[str, str] = CREDENTIALS) -> WebhookContext:
    return WebhookContext(tenant_id="tableflow_123", channel="whatsapp", credentials=credentials)


async def deliver(signed: SignedWebhook) -> list[Any]:
    result = await provider.handle_webhook(signed.webhook_request(), webhook_context())
    assert result.response.status == 200
    return list(result.events)


def ours(
    *, statuses: list[dict[str, Any]] | None = None, messages: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return change(
        PHONE_NUMBER_ID,
        display_phone_number=DISPLAY_NUMBER,
        statuses=statuses or (),
        messages=messages or (),
    )


class TestMetaContract(ProviderContract, WebhookContract):
    provider = provider
    channel = "whatsapp"
    credentials = CREDENTIALS
    wrong_credentials = {**CREDENTIALS, "accessToken": "EAAexpiredtoken"}
    wrong_credentials_code = "190"
    # Meta took the message; sending again could duplicate it.
    answer_without_id = "failed"
    # Without a Graph error nothing says the account is at fault.
    unavailable_statuses = frozenset()
    status_callback_url = WEBHOOK_URL

    def start_fake(self) -> ScriptedFake:
        return FakeMeta({PHONE_NUMBER_ID: ACCESS_TOKEN}).start()

    def message(self) -> OutboundMessage:
        return message()

    def error_reply(self, status: int, text: str) -> Reply:
        code = 130429 if status == 429 else 131026
        return meta_fake.error_reply(status, code, message=text)

    def reply_without_id(self) -> Reply:
        return Reply(200, b'{"messaging_product": "whatsapp"}')

    # The webhook contract: how the provider signs a callback.

    signing_credential = "appSecret"
    signature_headers = ("x-hub-signature-256",)

    def callback_body(self) -> bytes:
        return json.dumps(_PAYLOAD).encode()

    def sign(self, body: bytes) -> SignedWebhook:
        return signed_notification(WEBHOOK_URL, APP_SECRET, body)

    def sign_for_another_tenant(self, body: bytes) -> SignedWebhook:
        return signed_notification(WEBHOOK_URL, OTHER_APP_SECRET, body)


# Registration


def test_registers_the_meta_provider() -> None:
    registered: list[Provider] = []
    pipecored_meta.register_providers(register=registered.append)
    (meta,) = registered
    assert isinstance(meta, MetaProvider)
    assert meta.name == "meta"
    assert meta.channels == {"whatsapp"}
    assert meta.default_base_url == "https://graph.facebook.com"
    assert meta.default_settings == {"apiVersion": "v23.0"}
    assert meta.secret_names() == {"accessToken", "verifyToken", "appSecret"}
    # appSecret is optional: without it sends work and webhooks are refused (SPEC section 2)
    required = {f.name for f in meta.credentials if f.required_for("whatsapp")}
    assert required == {"accessToken", "phoneNumberId", "verifyToken"}


# The fake's check itself: it must refuse what Meta's document refuses.


def _recorded(payload: Any, headers: Mapping[str, str] | None = None) -> RecordedRequest:
    return RecordedRequest(
        method="POST",
        path=f"/v23.0/{PHONE_NUMBER_ID}/messages",
        query=[],
        headers=dict(
            headers
            if headers is not None
            else {"content-type": "application/json", "authorization": f"Bearer {ACCESS_TOKEN}"}
        ),
        body=json.dumps(payload).encode("utf-8"),
        url="",
    )


_VALID = dict(meta_fake.TEXT_MESSAGE)


def test_spec_check_accepts_a_documented_text_message() -> None:
    validate_meta_request(_recorded(_VALID))


BODY_ERROR = RequestBodyValidationError


@pytest.mark.parametrize(
    ("payload", "headers", "error"),
    [
        pytest.param({k: v for k, v in _VALID.items() if k != "to"}, None, BODY_ERROR, id="no-to"),
        pytest.param({**_VALID, "colour": "red"}, None, BODY_ERROR, id="unknown-key"),
        pytest.param({**_VALID, "text": {"body": 5}}, None, BODY_ERROR, id="body-not-text"),
        pytest.param(
            {**_VALID, "text": {"body": "x", "bold": True}},
            None,
            BODY_ERROR,
            id="unknown-text-key",
        ),
        pytest.param({**_VALID, "type": "image"}, None, BODY_ERROR, id="type-mismatch"),
        pytest.param(
            _VALID, {"content-type": "application/json"}, SecurityValidationError, id="no-token"
        ),
    ],
)
def test_spec_check_refuses(
    payload: Any, headers: Mapping[str, str] | None, error: type[Exception]
) -> None:
    with pytest.raises(RequestViolation) as caught:
        validate_meta_request(_recorded(payload, headers))
    assert isinstance(caught.value.__cause__, error)


async def test_the_fake_refuses_what_the_document_refuses_and_fails_the_test(
    fake: FakeMeta, http: httpx.AsyncClient
) -> None:
    body = json.dumps({**_VALID, "colour": "red"}).encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {ACCESS_TOKEN}"}
    answer = await http.post(
        f"{fake.url}/v23.0/{PHONE_NUMBER_ID}/messages", content=body, headers=headers
    )

    assert answer.status_code == 400
    assert fake.messages == []
    with pytest.raises(RequestViolation, match="colour"):
        fake.raise_violations()


# Sending


async def test_sends_text_as_meta_documents_it(fake: FakeMeta, http: httpx.AsyncClient) -> None:
    result = await provider.send(message(body=SPANISH), context(http, fake.url))

    (sent,) = fake.messages
    assert result.provider_message_id == sent.id
    assert result.provider_message_id.startswith("wamid.")
    assert result.status == "sent"
    assert result.http_status == 200
    (request,) = fake.requests
    assert request.method == "POST"
    assert request.path == f"/v23.0/{PHONE_NUMBER_ID}/messages"
    assert request.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert received_json(fake) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "34600111222",
        "type": "text",
        "text": {"body": SPANISH, "preview_url": False},
    }
    assert sent.body.encode("utf-8") == SPANISH.encode("utf-8")
    assert SPANISH.encode("utf-8") in request.body.replace(b"\\n", b"\n")


@pytest.mark.parametrize(
    "to",
    [
        pytest.param("+34600111222", id="e164"),
        pytest.param("34600111222", id="digits"),
        pytest.param("whatsapp:+34600111222", id="twilio-style"),
        pytest.param("+34 600 11 12 22", id="spaced"),
        pytest.param("+34 (600) 111-222", id="punctuated"),
    ],
)
async def test_recipient_is_sent_as_digits(
    fake: FakeMeta, http: httpx.AsyncClient, to: str
) -> None:
    await provider.send(message(to=(to,)), context(http, fake.url))
    assert received_json(fake)["to"] == "34600111222"


async def test_api_version_comes_from_settings(fake: FakeMeta, http: httpx.AsyncClient) -> None:
    await provider.send(message(), context(http, fake.url, settings={"apiVersion": "v24.0"}))
    assert fake.requests[0].path == f"/v24.0/{PHONE_NUMBER_ID}/messages"
    assert fake.messages[0].api_version == "v24.0"


async def test_api_version_defaults_without_settings(
    fake: FakeMeta, http: httpx.AsyncClient
) -> None:
    await provider.send(message(), context(http, fake.url, settings={}))
    assert fake.requests[0].path == f"/v23.0/{PHONE_NUMBER_ID}/messages"


async def test_missing_credential_is_named_and_fails_over(
    fake: FakeMeta, http: httpx.AsyncClient
) -> None:
    credentials = {k: v for k, v in CREDENTIALS.items() if k != "accessToken"}
    with pytest.raises(ProviderError) as caught:
        await provider.send(message(), context(http, fake.url, credentials=credentials))
    assert caught.value.code == "missing_credential"
    assert "accessToken" in caught.value.message
    assert caught.value.unavailable and not caught.value.retryable
    assert fake.requests == []


# Accept-time checks


@pytest.mark.parametrize(
    "sender",
    [pytest.param(None, id="no-override"), pytest.param(PHONE_NUMBER_ID, id="phone-number-id")],
)
def test_check_message_accepts(sender: str | None) -> None:
    provider.check_message(message(sender=sender), CREDENTIALS)


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        pytest.param(message(sender=OTHER_PHONE_NUMBER_ID), "from", id="other-number-id"),
        pytest.param(message(sender="+15550001234"), "from", id="display-number"),
        pytest.param(message(to=(CUSTOMER, "+34600333444")), "to", id="two-recipients"),
        pytest.param(message(to=("maria@example.com",)), "to", id="not-a-number"),
        pytest.param(message(to=("+12345",)), "to", id="too-short"),
        pytest.param(message(body=""), "body", id="empty-body"),
    ],
)
def test_check_message_refuses(msg: OutboundMessage, field: str) -> None:
    with pytest.raises(MessageRejected) as caught:
        provider.check_message(msg, CREDENTIALS)
    assert caught.value.field == field


# Errors


@pytest.mark.parametrize(
    ("status", "code", "extra", "retryable", "unavailable", "says"),
    [
        pytest.param(400, 131047, {}, False, False, "template", id="outside-window-131047"),
        pytest.param(401, 190, {"subcode": 463}, False, True, "access token", id="token-190"),
        pytest.param(403, 10, {}, False, True, "permission", id="permission-10"),
        pytest.param(403, 200, {}, False, True, "permission", id="permission-200"),
        pytest.param(400, 1, {}, True, False, "unknown", id="api-unknown-1"),
        pytest.param(503, 2, {}, True, False, "unavailable", id="api-service-2"),
        pytest.param(400, 4, {}, True, False, "limit", id="app-rate-limit-4"),
        pytest.param(400, 80007, {}, True, False, "rate", id="waba-rate-limit-80007"),
        pytest.param(429, 130429, {}, True, False, "rate", id="throughput-130429"),
        pytest.param(400, 131056, {}, True, False, "pair rate", id="pair-rate-131056"),
        pytest.param(400, 131000, {"is_transient": True}, True, False, "", id="is-transient"),
        pytest.param(
            400,
            100,
            {"details": "to is invalid"},
            False,
            False,
            "to is invalid",
            id="invalid-parameter-100",
        ),
        pytest.param(400, 131026, {}, False, False, "undeliverable", id="undeliverable-131026"),
        pytest.param(500, 100, {}, False, False, "", id="code-wins-over-5xx"),
    ],
)
async def test_classifies_graph_errors_by_code(
    fake: FakeMeta,
    http: httpx.AsyncClient,
    status: int,
    code: int,
    extra: dict[str, Any],
    retryable: bool,
    unavailable: bool,
    says: str,
) -> None:
    fake.fail_next(status=status, code=code, **extra)

    with pytest.raises(ProviderError) as caught:
        await provider.send(message(), context(http, fake.url))

    error = caught.value
    assert type(error) is ProviderError
    assert error.provider == "meta"
    # outside the 24-hour window is the SPEC's template_required; other codes are Meta's own
    assert error.code == ("template_required" if code == 131047 else str(code))
    assert error.http_status == status
    assert error.retryable is retryable
    assert error.unavailable is unavailable
    assert says.lower() in error.message.lower()
    assert_no_secret(error)
    assert fake.messages == []


# Webhooks: the subscription handshake


async def test_subscription_check_echoes_the_challenge() -> None:
    check = subscription_check(WEBHOOK_URL, verify_token=VERIFY_TOKEN, challenge="1158201444")
    result = await provider.handle_webhook(check.webhook_request(), webhook_context())
    assert result.events == ()
    assert result.response.status == 200
    assert result.response.body == b"1158201444"
    assert result.response.content_type.startswith("text/plain")


@pytest.mark.parametrize(
    ("token", "error"),
    [
        pytest.param("wrong-token", WebhookSignatureError, id="wrong-token"),
        pytest.param("", WebhookSignatureError, id="empty-token"),
        pytest.param(VERIFY_TOKEN + "x", WebhookSignatureError, id="longer-token"),
        pytest.param("tökën", WebhookSignatureError, id="non-ascii-token"),
    ],
)
async def test_subscription_check_refuses_a_wrong_token(token: str, error: type[Exception]) -> None:
    check = subscription_check(WEBHOOK_URL, verify_token=token, challenge="1158201444")
    with pytest.raises(error) as caught:
        await provider.handle_webhook(check.webhook_request(), webhook_context())
    assert VERIFY_TOKEN not in str(caught.value)


async def test_subscription_check_needs_subscribe_mode() -> None:
    check = subscription_check(
        WEBHOOK_URL, verify_token=VERIFY_TOKEN, challenge="1", mode="unsubscribe"
    )
    with pytest.raises(WebhookPayloadError):
        await provider.handle_webhook(check.webhook_request(), webhook_context())


# Webhooks: signatures

_PAYLOAD = notification([ours(statuses=[status("wamid.A1", "delivered", timestamp=1767225600)])])
_GOOD = signed_notification(WEBHOOK_URL, APP_SECRET, _PAYLOAD)


def _header(signed: SignedWebhook, value: str | None) -> SignedWebhook:
    headers = {k: v for k, v in signed.headers.items() if k != "x-hub-signature-256"}
    if value is not None:
        headers["x-hub-signature-256"] = value
    return SignedWebhook(signed.method, signed.url, headers, signed.body)


async def test_signed_notification_is_applied() -> None:
    events = await deliver(_GOOD)
    assert events == [
        StatusEvent(
            status="delivered",
            provider_message_id="wamid.A1",
            occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
    ]


@pytest.mark.parametrize(
    "signed",
    [
        pytest.param(_header(_GOOD, "sha256=" + "0" * 64), id="forged"),
        pytest.param(
            SignedWebhook(
                "POST", WEBHOOK_URL, _GOOD.headers, _GOOD.body.replace(b"delivered", b"read")
            ),
            id="tampered-body",
        ),
        pytest.param(_header(_GOOD, None), id="unsigned"),
        pytest.param(_header(_GOOD, ""), id="empty-signature"),
        pytest.param(_header(_GOOD, _GOOD.headers["x-hub-signature-256"][7:]), id="no-prefix"),
        pytest.param(_header(_GOOD, "sha1=" + "0" * 40), id="sha1"),
        pytest.param(_header(_GOOD, "sha256=ünïcode"), id="non-ascii"),
        pytest.param(
            signed_notification(WEBHOOK_URL, STALE_APP_SECRET, _PAYLOAD), id="stale-secret"
        ),
        pytest.param(
            signed_notification(WEBHOOK_URL, OTHER_APP_SECRET, _PAYLOAD), id="other-tenants-secret"
        ),
    ],
)
async def test_refuses_unverified_notifications(signed: SignedWebhook) -> None:
    with pytest.raises(WebhookSignatureError) as caught:
        await deliver(signed)
    for secret in (APP_SECRET, OTHER_APP_SECRET):
        assert secret not in str(caught.value)


async def test_uppercase_hex_signature_verifies() -> None:
    header = _GOOD.headers["x-hub-signature-256"]
    events = await deliver(_header(_GOOD, "sha256=" + header[7:].upper()))
    assert len(events) == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"[]", id="not-an-object"),
        pytest.param(json.dumps({"object": "page", "entry": []}).encode(), id="not-whatsapp"),
        pytest.param(
            json.dumps({"object": "whatsapp_business_account", "entry": {}}).encode(),
            id="entry-not-a-list",
        ),
        pytest.param(
            json.dumps(notification([ours(statuses=[{"status": "sent"}])])).encode(),
            id="status-without-id",
        ),
        pytest.param(
            json.dumps(
                notification([ours(statuses=[status("wamid.A", "sent") | {"timestamp": "soon"}])])
            ).encode(),
            id="bad-timestamp",
        ),
    ],
)
async def test_signed_but_malformed_is_a_payload_error(body: bytes) -> None:
    with pytest.raises(WebhookPayloadError):
        await deliver(signed_notification(WEBHOOK_URL, APP_SECRET, body))


# Webhooks: what they say


async def test_several_entries_changes_statuses_and_messages() -> None:
    payload = notification(
        [
            ours(
                statuses=[
                    status("wamid.S1", "sent", timestamp=1767225600),
                    status("wamid.S1", "delivered", timestamp=1767225601),
                ]
            ),
            change(OTHER_PHONE_NUMBER_ID, statuses=[status("wamid.OTHER", "read")]),
            ours(messages=[inbound("34600111222", body="Primera", message_id="wamid.M1")]),
            change(PHONE_NUMBER_ID, field_name="message_template_status_update"),
        ],
        [
            ours(
                statuses=[status("wamid.S2", "read", timestamp=1767225602)],
                messages=[inbound("34600333444", body="Segunda", message_id="wamid.M2")],
            ),
        ],
    )
    events = await deliver(signed_notification(WEBHOOK_URL, APP_SECRET, payload))
    summary = [
        (e.status, e.provider_message_id)
        if isinstance(e, StatusEvent)
        else ("inbound", e.provider_message_id, e.sender, e.body)
        for e in events
    ]
    assert summary == [
        ("sent", "wamid.S1"),
        ("delivered", "wamid.S1"),
        ("inbound", "wamid.M1", "+34600111222", "Primera"),
        ("read", "wamid.S2"),
        ("inbound", "wamid.M2", "+34600333444", "Segunda"),
    ]


async def test_another_numbers_notification_changes_nothing() -> None:
    payload = notification(
        [
            change(
                OTHER_PHONE_NUMBER_ID,
                statuses=[status("wamid.X", "delivered")],
                messages=[inbound("34600111222", body="hola")],
            )
        ]
    )
    assert await deliver(signed_notification(WEBHOOK_URL, APP_SECRET, payload)) == []


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        pytest.param("sent", "sent", id="sent"),
        pytest.param("delivered", "delivered", id="delivered"),
        pytest.param("read", "read", id="read"),
        pytest.param("failed", "failed", id="failed"),
        pytest.param("deleted", None, id="deleted"),
        pytest.param("warning", None, id="warning"),
    ],
)
async def test_maps_meta_statuses(state: str, expected: str | None) -> None:
    payload = notification([ours(statuses=[status("wamid.A", state, timestamp=1767225600)])])
    events = await deliver(signed_notification(WEBHOOK_URL, APP_SECRET, payload))
    assert [e.status for e in events] == ([expected] if expected else [])
    for event in events:
        assert event.occurred_at == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("error", "code", "says"),
    [
        pytest.param(
            status_error(
                131047,
                "Re-engagement message",
                details="Message failed to send because more than 24 hours have passed",
            ),
            "template_required",
            "template",
            id="outside-window",
        ),
        pytest.param(
            status_error(131026, "Message undeliverable"),
            "131026",
            "Message undeliverable",
            id="undeliverable",
        ),
    ],
)
async def test_failed_status_carries_the_error(error: dict[str, Any], code: str, says: str) -> None:
    payload = notification([ours(statuses=[status("wamid.F", "failed", errors=[error])])])
    (event,) = await deliver(signed_notification(WEBHOOK_URL, APP_SECRET, payload))
    assert isinstance(event, StatusEvent)
    assert event.status == "failed"
    assert event.error_code == code
    assert event.error_message is not None and says in event.error_message


async def test_inbound_text_keeps_accents_emoji_and_newlines() -> None:
    payload = notification(
        [
            ours(
                messages=[
                    inbound(
                        "34600111222", body=SPANISH, message_id="wamid.IN", timestamp=1767225600
                    )
                ]
            )
        ]
    )
    (event,) = await deliver(signed_notification(WEBHOOK_URL, APP_SECRET, payload))
    assert event == InboundMessage(
        sender=CUSTOMER,
        recipient=DISPLAY_NUMBER,
        body=SPANISH,
        provider_message_id="wamid.IN",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert event.body.encode("utf-8") == SPANISH.encode("utf-8")


async def test_inbound_recipient_falls_back_on_phone_number_id() -> None:
    value = ours(messages=[inbound("34600111222", body="hola")])
    del value["value"]["metadata"]["display_phone_number"]
    (event,) = await deliver(signed_notification(WEBHOOK_URL, APP_SECRET, notification([value])))
    assert event.recipient == PHONE_NUMBER_ID


@pytest.mark.parametrize(
    ("kind", "content", "body"),
    [
        pytest.param(
            "button", {"text": "Confirmar", "payload": "CONFIRM"}, "Confirmar", id="button"
        ),
        pytest.param(
            "interactive",
            {"type": "button_reply", "button_reply": {"id": "yes", "title": "Sí, gracias"}},
            "Sí, gracias",
            id="interactive-button",
        ),
        pytest.param(
            "interactive",
            {"type": "list_reply", "list_reply": {"id": "t2", "title": "Mesa para dos"}},
            "Mesa para dos",
            id="interactive-list",
        ),
        pytest.param(
            "location",
            {"latitude": 40.4168, "longitude": -3.7038, "name": "Sol"},
            "[location] Sol 40.4168,-3.7038",
            id="location",
        ),
        pytest.param(
            "reaction", {"message_id": "wamid.X", "emoji": "👍"}, "[reaction] 👍", id="reaction"
        ),
        pytest.param("contacts", None, "[contacts]", id="contacts"),
        pytest.param("unsupported", None, "[unsupported]", id="unsupported"),
    ],
)
async def test_inbound_non_text_is_described(
    kind: str, content: dict[str, Any] | None, body: str
) -> None:
    payload = notification([ours(messages=[inbound("34600111222", kind, content)])])
    (event,) = await deliver(signed_notification(WEBHOOK_URL, APP_SECRET, payload))
    assert isinstance(event, InboundMessage)
    assert event.body == body
    assert event.sender == CUSTOMER


@pytest.mark.parametrize(
    ("kind", "content", "body", "media"),
    [
        pytest.param(
            "image",
            {"id": "1", "mime_type": "image/jpeg"},
            "",
            InboundMedia("image", "image/jpeg", provider_media_id="1"),
            id="image",
        ),
        pytest.param(
            "image",
            {"id": "1", "caption": "Mi mesa 🍽️"},
            "Mi mesa 🍽️",
            InboundMedia("image", provider_media_id="1", caption="Mi mesa 🍽️"),
            id="image-caption",
        ),
        pytest.param(
            "document",
            {"id": "1", "filename": "menú.pdf", "mime_type": "application/pdf"},
            "",
            InboundMedia("document", "application/pdf", provider_media_id="1", filename="menú.pdf"),
            id="document",
        ),
        pytest.param(
            "audio",
            {"id": "1", "voice": True},
            "",
            InboundMedia("audio", provider_media_id="1"),
            id="audio",
        ),
        pytest.param(
            "sticker", {"id": "1"}, "", InboundMedia("sticker", provider_media_id="1"), id="sticker"
        ),
    ],
)
async def test_inbound_files_are_the_messages_media_with_their_caption_as_text(
    kind: str, content: dict[str, Any], body: str, media: InboundMedia
) -> None:
    # SPEC section 7: the file itself (kind, MIME type, Meta's media id), not a "[image]" text
    payload = notification([ours(messages=[inbound("34600111222", kind, content)])])
    (event,) = await deliver(signed_notification(WEBHOOK_URL, APP_SECRET, payload))
    assert isinstance(event, InboundMessage)
    assert event.body == body
    assert event.media == (media,)


# Templates and media (SPEC section 7): each request checked against Meta's document


async def test_a_template_goes_as_metas_template_with_body_parameters(
    fake: FakeMeta, http: httpx.AsyncClient
) -> None:
    templated = replace(
        message(body=None),
        template=TemplateRef("order_confirmation", "es", {"2": "20:30", "1": "Ana"}),
    )
    ctx = replace(
        context(http, fake.url), template={"name": "order_confirmation", "language": "es"}
    )
    await provider.send(templated, ctx)
    sent = received_json(fake)
    assert sent["type"] == "template"
    assert sent["template"] == {
        "name": "order_confirmation",
        "language": {"policy": "deterministic", "code": "es"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "20:30"}],
            }
        ],
    }
    assert "text" not in sent


async def test_a_templates_header_document_comes_from_the_messages_media(
    fake: FakeMeta, http: httpx.AsyncClient
) -> None:
    templated = replace(
        message(body=None),
        template=TemplateRef("invoice", "es", {"1": "F-123"}),
        media=(Media("https://files.example.com/f-123.pdf", filename="factura.pdf"),),
    )
    ctx = replace(
        context(http, fake.url),
        template={"name": "invoice", "language": "es", "header": "document"},
    )
    await provider.send(templated, ctx)
    header = received_json(fake)["template"]["components"][0]
    assert header == {
        "type": "header",
        "parameters": [
            {
                "type": "document",
                "document": {"link": "https://files.example.com/f-123.pdf"},
            }
        ],
    }


@pytest.mark.parametrize(
    ("media", "kind", "expected"),
    [
        pytest.param(
            Media("https://files.example.com/f.pdf", filename="factura.pdf", caption="Tu factura"),
            "document",
            {
                "link": "https://files.example.com/f.pdf",
                "caption": "Tu factura",
                "filename": "factura.pdf",
            },
            id="document",
        ),
        pytest.param(
            Media("https://files.example.com/menu.jpg"),
            "image",
            {"link": "https://files.example.com/menu.jpg"},
            id="image",
        ),
        pytest.param(
            Media("https://files.example.com/nota.ogg"),
            "audio",
            {"link": "https://files.example.com/nota.ogg"},
            id="audio-without-caption",
        ),
    ],
)
async def test_a_file_goes_as_its_own_kind_by_link(
    fake: FakeMeta, http: httpx.AsyncClient, media: Media, kind: str, expected: dict[str, str]
) -> None:
    await provider.send(replace(message(body=None), media=(media,)), context(http, fake.url))
    sent = received_json(fake)
    assert sent["type"] == kind
    assert sent[kind] == expected


def test_more_than_one_file_is_refused_at_accept_time() -> None:
    two = replace(
        message(body=None),
        template=TemplateRef("invoice", "es", {}),
        media=(Media("https://a.example/1.jpg"), Media("https://a.example/2.jpg")),
    )
    with pytest.raises(MessageRejected) as refused:
        provider.check_message(two, CREDENTIALS)
    assert refused.value.field == "media"
