"""httpjson's own tests, written as any third-party plugin's would be: a fake of the gateway built
with pipecored.testing, and pipecored's provider and webhook contracts run against the plugin."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pipecored_httpjson import CHAT, HttpJsonProvider
from starlette.responses import JSONResponse, Response

from pipecored import (
    InboundMessage,
    OutboundMessage,
    SendContext,
    StatusEvent,
    WebhookContext,
)
from pipecored.testing import (
    JsonSchemaCheck,
    ProviderContract,
    RecordedRequest,
    Reply,
    ScriptedFake,
    SignedWebhook,
    WebhookContract,
)

# The gateway's wire format: every request the fake receives is checked against it, strictly.
SCHEMA = json.loads(Path(__file__).with_name("messages.schema.json").read_text(encoding="utf-8"))
TOKEN = "hj-token-0123456789"
SIGNING_SECRET = "hj-signing-0123456789"
CREDENTIALS = {"token": TOKEN, "signingSecret": SIGNING_SECRET}

provider = HttpJsonProvider()


class FakeGateway(ScriptedFake):
    """The in-house gateway on 127.0.0.1: ``201 {"id"}`` for the right token, 401 otherwise."""

    def __init__(self, token: str) -> None:
        super().__init__(check=JsonSchemaCheck({("POST", "/messages"): SCHEMA}))
        self.token = token

    def default_answer(self, request: RecordedRequest) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "unknown token"}, status_code=401)
        return JSONResponse({"id": f"gw-{len(self.requests)}"}, status_code=201)


def sms(**fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "id": "msg_1",
        "tenant_id": "acme",
        "channel": "sms",
        "to": ("+34600111222",),
        "body": "¡Hola! Tu mesa está lista 🍽️",
    }
    return OutboundMessage(**{**values, **fields})


class TestHttpJsonContract(ProviderContract, WebhookContract):
    provider = provider
    channel = "sms"
    credentials = CREDENTIALS
    wrong_credentials = {**CREDENTIALS, "token": "hj-token-revoked"}
    answer_without_id = "failed"
    plain_answer_message = "the gateway answered HTTP {status}"
    error_text_verbatim = True

    def start_fake(self) -> ScriptedFake:
        return FakeGateway(TOKEN).start()

    def message(self) -> OutboundMessage:
        return sms()

    def error_reply(self, status: int, text: str) -> Reply:
        return Reply(status, json.dumps({"error": text}).encode())

    def reply_without_id(self) -> Reply:
        return Reply(201, b"{}")

    # The webhook contract: how the provider signs a callback.

    signing_credential = "signingSecret"
    signature_headers = ("x-signature",)

    def callback_body(self) -> bytes:
        return json.dumps({"events": [{"id": "gw-1", "status": "delivered"}]}).encode()

    def sign(self, body: bytes) -> SignedWebhook:
        return signed(body)

    def sign_for_another_tenant(self, body: bytes) -> SignedWebhook:
        return signed(body, secret="someone-else")


# What is httpjson's own: the body it sends and the callbacks it reads.


async def send(message: OutboundMessage, gateway: FakeGateway) -> str:
    async with httpx.AsyncClient() as http:
        context = SendContext(
            tenant_id="acme",
            channel=message.channel,
            credentials=CREDENTIALS,
            base_url=gateway.url,
            http=http,
            timeout=5,
        )
        return (await provider.send(message, context)).provider_message_id


@pytest.fixture(scope="module")
def shared_gateway() -> Iterator[FakeGateway]:
    with FakeGateway(TOKEN) as gateway:
        yield gateway


@pytest.fixture
def gateway(shared_gateway: FakeGateway) -> Iterator[FakeGateway]:
    shared_gateway.reset()
    yield shared_gateway
    shared_gateway.raise_violations()


async def test_an_sms_is_sent_byte_exact(gateway: FakeGateway) -> None:
    assert await send(sms(sender="+34911000000"), gateway) == "gw-1"
    [request] = gateway.requests
    assert request.json() == {
        "id": "msg_1",
        "channel": "sms",
        "to": ["+34600111222"],
        "from": "+34911000000",
        "body": "¡Hola! Tu mesa está lista 🍽️",
    }


async def test_a_chat_message_goes_to_its_user_or_room(gateway: FakeGateway) -> None:
    chat = sms(channel="chat", to=("#reservas",), body="Mesa 4 lista 🍽️")
    assert await send(chat, gateway) == "gw-1"
    [request] = gateway.requests
    assert request.json()["channel"] == "chat"
    assert request.json()["to"] == ["#reservas"]


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        pytest.param("@ana", True, id="user"),
        pytest.param("#reservas", True, id="room"),
        pytest.param("ana", False, id="bare-name"),
        pytest.param("@ana maría", False, id="space"),
        pytest.param("@ana\n", False, id="trailing-newline"),
    ],
)
def test_the_chat_channel_checks_its_addresses(address: str, ok: bool) -> None:
    if ok:
        assert CHAT.check_address(address) == address
    else:
        with pytest.raises(ValueError, match="chat user"):
            CHAT.check_address(address)


async def test_an_email_carries_its_subject_and_both_bodies(gateway: FakeGateway) -> None:
    email = OutboundMessage(
        id="msg_2",
        tenant_id="acme",
        channel="email",
        to=("begona@example.com",),
        subject="Tu reserva",
        html="<p>Mesa para 4</p>",
    )
    await send(email, gateway)
    assert gateway.requests[0].json() == {
        "id": "msg_2",
        "channel": "email",
        "to": ["begona@example.com"],
        "from": None,
        "subject": "Tu reserva",
        "html": "<p>Mesa para 4</p>",
        "text": None,
    }


def signed(body: bytes, secret: str = SIGNING_SECRET) -> SignedWebhook:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    url = "https://pipecore.example.com/messaging/webhook/sms?tenant_id=acme&provider=httpjson"
    return SignedWebhook("POST", url, {"X-Signature": signature}, body)


def callback(events: list[dict[str, Any]]) -> SignedWebhook:
    return signed(json.dumps({"events": events}).encode())


def webhook_context() -> WebhookContext:
    return WebhookContext(tenant_id="acme", channel="sms", credentials=CREDENTIALS)


async def test_a_signed_batch_gives_statuses_and_replies() -> None:
    signed = callback(
        [
            {"id": "gw-1", "status": "delivered"},
            {"id": "gw-2", "status": "queued"},  # not a status pipecored keeps
            {"from": "+34600111222", "to": "+34911000000", "body": "¿A las 21?", "id": "in-1"},
        ]
    )
    result = await provider.handle_webhook(signed.webhook_request(), webhook_context())
    assert list(result.events) == [
        StatusEvent(status="delivered", provider_message_id="gw-1"),
        InboundMessage(
            sender="+34600111222",
            recipient="+34911000000",
            body="¿A las 21?",
            provider_message_id="in-1",
        ),
    ]
