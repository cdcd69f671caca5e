"""Twilio's side of templates and files (SPEC section 7), against the loopback fake, which checks
every request against Twilio's OpenAPI document as it arrives: a Content template as
``ContentSid`` + ``ContentVariables``, files as ``MediaUrl`` (MMS on SMS, one file on WhatsApp),
and a file's caption in the ``Body`` (Twilio has no caption of a file's own)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pipecored_twilio import TwilioProvider

from pipecored import (
    Media,
    MessageRejected,
    OutboundMessage,
    ProviderError,
    SendContext,
    TemplateRef,
)
from tests.fakes.specs import validate_request
from tests.fakes.twilio import FakeTwilio
from tests.plugins.support import send_context

ACCOUNT_SID = "AC5e1f0a2b3c4d5e6f708192a3b4c5d6e7"
AUTH_TOKEN = "b1946ac92492d2347c6235b4d2611184"
CREDENTIALS = {
    "sms": {"accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN, "phoneNumber": "+15005550006"},
    "whatsapp": {
        "accountSid": ACCOUNT_SID,
        "authToken": AUTH_TOKEN,
        "whatsappNumber": "whatsapp:+14155238886",
    },
}
CONTENT_SID = "HXb5b62575e6e4ff6129ad7c8efe1f983e"

provider = TwilioProvider()


@pytest.fixture(scope="module")
def shared_fake() -> Iterator[FakeTwilio]:
    with FakeTwilio({ACCOUNT_SID: AUTH_TOKEN}) as server:
        yield server


def context(http: httpx.AsyncClient, fake: FakeTwilio, channel: str, **extra: Any) -> SendContext:
    return send_context(
        http,
        fake.url,
        tenant_id="roe_789",
        channel=channel,
        credentials=CREDENTIALS[channel],
        **extra,
    )


def message(channel: str, *, body: str | None = None, **fields: Any) -> OutboundMessage:
    return OutboundMessage(
        id="msg_mms_1",
        tenant_id="roe_789",
        channel=channel,
        to=("+34600111222",),
        body=body,
        **fields,
    )


def sent_form(fake: FakeTwilio) -> dict[str, list[str]]:
    (request,) = fake.requests
    validate_request("twilio", request)
    return parse_qs(request.body.decode("utf-8"))


async def test_an_mms_without_text_has_media_urls_and_no_body(
    fake: FakeTwilio, http: httpx.AsyncClient
) -> None:
    photos = message(
        "sms",
        media=(Media("https://f.example/pedido.jpg"), Media("https://f.example/ticket.png")),
    )
    provider.check_message(photos, CREDENTIALS["sms"])
    await provider.send(photos, context(http, fake, "sms"))
    form = sent_form(fake)
    assert form["MediaUrl"] == ["https://f.example/pedido.jpg", "https://f.example/ticket.png"]
    assert "Body" not in form


async def test_captions_come_before_the_text_in_the_body(
    fake: FakeTwilio, http: httpx.AsyncClient
) -> None:
    photos = message(
        "sms",
        body="Tu pedido está en camino 📦",
        media=(
            Media("https://f.example/pedido.jpg", caption="Tu pedido"),
            Media("https://f.example/mapa.png"),
            Media("https://f.example/ticket.png", caption="El ticket, Begoña"),
        ),
    )
    await provider.send(photos, context(http, fake, "sms"))
    assert sent_form(fake)["Body"] == [
        "Tu pedido\n\nEl ticket, Begoña\n\nTu pedido está en camino 📦"
    ]


async def test_a_whatsapp_files_caption_is_its_body(
    fake: FakeTwilio, http: httpx.AsyncClient
) -> None:
    invoice = message(
        "whatsapp", media=(Media("https://f.example/f-123.pdf", caption="Factura de noviembre"),)
    )
    await provider.send(invoice, context(http, fake, "whatsapp"))
    form = sent_form(fake)
    assert form["Body"] == ["Factura de noviembre"]
    assert form["MediaUrl"] == ["https://f.example/f-123.pdf"]


async def test_a_content_template_without_a_text_needs_no_body(
    fake: FakeTwilio, http: httpx.AsyncClient
) -> None:
    # the tenant maps a Content template and no text: the host leaves the body empty
    confirmation = message(
        "whatsapp", template=TemplateRef("order_confirmation", "es", {"1": "Begoña", "2": "20:30"})
    )
    provider.check_message(confirmation, CREDENTIALS["whatsapp"])
    await provider.send(
        confirmation,
        replace(context(http, fake, "whatsapp"), template={"contentSid": CONTENT_SID}),
    )
    form = sent_form(fake)
    assert form["ContentSid"] == [CONTENT_SID]
    assert json.loads(form["ContentVariables"][0]) == {"1": "Begoña", "2": "20:30"}
    assert "Body" not in form


def test_more_than_one_file_on_whatsapp_is_refused_at_accept_time() -> None:
    two = message(
        "whatsapp", media=(Media("https://f.example/1.jpg"), Media("https://f.example/2.jpg"))
    )
    with pytest.raises(MessageRejected) as refused:
        provider.check_message(two, CREDENTIALS["whatsapp"])
    assert refused.value.field == "media"
    assert "one file per WhatsApp message" in refused.value.message


async def test_more_than_one_file_on_a_whatsapp_fallback_fails_before_sending(
    fake: FakeTwilio, http: httpx.AsyncClient
) -> None:
    # accepted by the primary provider's checks (Meta sends each file on its own)
    two = message(
        "whatsapp", media=(Media("https://f.example/1.jpg"), Media("https://f.example/2.jpg"))
    )
    with pytest.raises(ProviderError) as caught:
        await provider.send(two, context(http, fake, "whatsapp"))
    assert (caught.value.code, caught.value.retryable) == ("too_many_media", False)
    assert fake.requests == []


@pytest.mark.parametrize(
    ("count", "accepted"),
    [pytest.param(10, True, id="ten"), pytest.param(11, False, id="eleven")],
)
def test_an_mms_takes_up_to_ten_files(count: int, accepted: bool) -> None:
    mms = message("sms", media=tuple(Media(f"https://f.example/{i}.jpg") for i in range(count)))
    if accepted:
        provider.check_message(mms, CREDENTIALS["sms"])
        return
    with pytest.raises(MessageRejected) as refused:
        provider.check_message(mms, CREDENTIALS["sms"])
    assert refused.value.field == "media"


def test_a_message_with_nothing_to_send_is_refused() -> None:
    with pytest.raises(MessageRejected) as refused:
        provider.check_message(message("sms"), CREDENTIALS["sms"])
    assert refused.value.field == "body"
