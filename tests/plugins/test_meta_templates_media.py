"""Meta's side of templates and files (SPEC section 7), against the loopback fake, which checks
every request against Meta's OpenAPI document as it arrives.

A message with files is several requests (the Cloud API carries one file per message): each file
by link with its caption and a document's file name, then the text; the message's id is the first
request's. A template is one request, its header file the message's file when the tenant's
mapping declares one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
import structlog
from pipecored_meta import MetaProvider

from pipecored import (
    Media,
    MessageRejected,
    OutboundMessage,
    ProviderError,
    SendContext,
    TemplateRef,
)
from pipecored.testing import RecordedRequest, RequestViolation
from tests.fakes.meta import FakeMeta, validate_meta_request
from tests.fakes.specs import load_spec, validate_request
from tests.plugins.support import send_context

PHONE_NUMBER_ID = "106540352242922"
ACCESS_TOKEN = "EAAGm0PX4ZCpsBAKZAZBtableflowToken"
CREDENTIALS = {
    "accessToken": ACCESS_TOKEN,
    "phoneNumberId": PHONE_NUMBER_ID,
    "verifyToken": "verify-me",
    "appSecret": "app-secret-0123",
}
CUSTOMER = "+34600111222"
PDF_URL = "https://files.example.com/facturas/f-123.pdf"

provider = MetaProvider()


@pytest.fixture(scope="module")
def shared_fake() -> Iterator[FakeMeta]:
    with FakeMeta({PHONE_NUMBER_ID: ACCESS_TOKEN}) as server:
        yield server


def context(http: httpx.AsyncClient, fake: FakeMeta, **extra: Any) -> SendContext:
    return send_context(
        http,
        fake.url,
        tenant_id="genda_456",
        channel="whatsapp",
        credentials=CREDENTIALS,
        **extra,
    )


def message(*, body: str | None = None, **fields: Any) -> OutboundMessage:
    return OutboundMessage(
        id="msg_media_1",
        tenant_id="genda_456",
        channel="whatsapp",
        to=(CUSTOMER,),
        body=body,
        **fields,
    )


def sent_payloads(fake: FakeMeta) -> list[dict[str, Any]]:
    for request in fake.requests:
        validate_meta_request(request)
    return [json.loads(r.body.decode("utf-8")) for r in fake.requests]


def content(payload: dict[str, Any]) -> tuple[str, Any]:
    """A request's type and its object, without the fields every request carries."""
    assert payload["messaging_product"] == "whatsapp"
    assert payload["to"] == "34600111222"
    return payload["type"], payload[payload["type"]]


# Files without a template


async def test_each_file_goes_as_its_own_message_then_the_text(
    fake: FakeMeta, http: httpx.AsyncClient
) -> None:
    with_files = message(
        body="Aquí tienes tu factura y la carta, Begoña 🧾",
        media=(
            Media(PDF_URL, filename="factura-123 ñ.pdf", caption="Factura de noviembre"),
            Media("https://files.example.com/carta.jpg", caption="La carta de hoy 🍽️"),
            Media("https://files.example.com/nota-de-voz.ogg", caption="Escúchala"),
        ),
    )
    with structlog.testing.capture_logs() as logs:
        result = await provider.send(with_files, context(http, fake))

    sent = [content(p) for p in sent_payloads(fake)]
    assert sent == [
        (
            "document",
            {"link": PDF_URL, "caption": "Factura de noviembre", "filename": "factura-123 ñ.pdf"},
        ),
        ("image", {"link": "https://files.example.com/carta.jpg", "caption": "La carta de hoy 🍽️"}),
        # Meta shows no caption under a voice note: the caption follows it as a text
        ("audio", {"link": "https://files.example.com/nota-de-voz.ogg"}),
        ("text", {"body": "Escúchala", "preview_url": False}),
        ("text", {"body": "Aquí tienes tu factura y la carta, Begoña 🧾", "preview_url": False}),
    ]
    ids = [m.id for m in fake.messages]
    # the message is its first part; the log keeps every part's id
    assert result.provider_message_id == ids[0]
    (parts,) = [entry for entry in logs if entry["event"] == "meta.message_parts"]
    assert parts["message_id"] == "msg_media_1"
    assert parts["provider_message_ids"] == ids


async def test_one_file_without_text_is_one_request(
    fake: FakeMeta, http: httpx.AsyncClient
) -> None:
    with structlog.testing.capture_logs() as logs:
        result = await provider.send(message(media=(Media(PDF_URL),)), context(http, fake))
    assert [content(p) for p in sent_payloads(fake)] == [("document", {"link": PDF_URL})]
    assert result.provider_message_id == fake.messages[0].id
    assert not [entry for entry in logs if entry["event"] == "meta.message_parts"]


@pytest.mark.parametrize(
    ("media", "kind"),
    [
        pytest.param(Media("https://f.example/a/menu.JPG"), "image", id="jpg-any-case"),
        pytest.param(Media("https://f.example/a.png?v=2"), "image", id="png-with-query"),
        pytest.param(Media("https://f.example/visita.mp4"), "video", id="mp4"),
        pytest.param(Media("https://f.example/nota.opus"), "audio", id="opus"),
        pytest.param(Media("https://f.example/sticker.webp"), "document", id="webp-not-image"),
        pytest.param(Media("https://f.example/download?id=7"), "document", id="no-extension"),
        pytest.param(
            Media("https://f.example/download?id=7", filename="plano.png"),
            "image",
            id="file-name-extension",
        ),
        pytest.param(
            Media("https://f.example/a.jpg", filename="a.pdf"), "document", id="file-name-first"
        ),
    ],
)
async def test_a_files_kind_comes_from_its_file_name_else_its_url(
    fake: FakeMeta, http: httpx.AsyncClient, media: Media, kind: str
) -> None:
    await provider.send(message(media=(media,)), context(http, fake))
    ((sent_kind, link),) = [content(p) for p in sent_payloads(fake)]
    assert sent_kind == kind
    assert link["link"] == media.url
    # a file name is Meta's for documents only
    assert ("filename" in link) == (kind == "document" and media.filename is not None)


# A part that fails after others went


async def test_a_part_failing_after_others_went_fails_the_message_for_good(
    fake: FakeMeta, http: httpx.AsyncClient
) -> None:
    fake.delay_next(0)  # the first part is taken as usual
    fake.fail_next(status=503, code=2, is_transient=True)  # a refusal Meta says to retry
    two_files = message(
        body="Tu pedido",
        media=(Media("https://f.example/1.jpg"), Media("https://f.example/2.jpg")),
    )
    with pytest.raises(ProviderError) as caught:
        await provider.send(two_files, context(http, fake))
    error = caught.value
    # a retry or a fallback would deliver the first file twice
    assert (error.retryable, error.unavailable) == (False, False)
    assert error.code == "2"
    (first,) = fake.messages
    assert first.id in error.message
    assert "took 1 of the message's 3 parts" in error.message
    assert len(fake.requests) == 2  # nothing after the failed part


async def test_a_first_part_failing_is_the_providers_error_as_it_is(
    fake: FakeMeta, http: httpx.AsyncClient
) -> None:
    fake.fail_next(status=429, code=130429)
    two_files = message(media=(Media("https://f.example/1.jpg"), Media("https://f.example/2.jpg")))
    with pytest.raises(ProviderError) as caught:
        await provider.send(two_files, context(http, fake))
    # nothing reached the customer: retrying is safe
    assert caught.value.retryable
    assert len(fake.requests) == 1


# Templates


async def test_a_templates_header_file_and_body_parameters(
    fake: FakeMeta, http: httpx.AsyncClient
) -> None:
    invoice = message(
        template=TemplateRef("invoice", "es", {"1": "Begoña", "2": "F-123", "10": "diez"}),
        media=(Media(PDF_URL, filename="factura.pdf", caption="no caption in a header"),),
    )
    ctx = replace(
        context(http, fake),
        template={"name": "factura_lista", "language": "es_ES", "header": "document"},
    )
    await provider.send(invoice, ctx)
    ((kind, template),) = [content(p) for p in sent_payloads(fake)]
    assert kind == "template"
    assert template == {
        "name": "factura_lista",
        "language": {"policy": "deterministic", "code": "es_ES"},
        "components": [
            {"type": "header", "parameters": [{"type": "document", "document": {"link": PDF_URL}}]},
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "Begoña"},
                    {"type": "text", "text": "F-123"},
                    {"type": "text", "text": "diez"},  # {{10}} after {{2}}: number order
                ],
            },
        ],
    }


async def test_the_mappings_variables_give_the_body_parameters_order(
    fake: FakeMeta, http: httpx.AsyncClient
) -> None:
    reminder = message(
        template=TemplateRef("reminder", "es", {"hora": "10:30", "nombre": "Begoña", "x": "-"})
    )
    ctx = replace(
        context(http, fake),
        template={"name": "recordatorio", "language": "es", "variables": ["nombre", "hora"]},
    )
    await provider.send(reminder, ctx)
    ((_, template),) = [content(p) for p in sent_payloads(fake)]
    assert template["components"] == [
        {
            "type": "body",
            "parameters": [{"type": "text", "text": "Begoña"}, {"type": "text", "text": "10:30"}],
        }
    ]


async def test_a_template_without_a_meta_mapping_goes_as_its_text_and_files(
    fake: FakeMeta, http: httpx.AsyncClient
) -> None:
    # the host put the template's text in the body; ctx.template is None for this provider
    text = "Hola Begoña, tu factura F-123 está lista."
    invoice = message(
        body=text, template=TemplateRef("invoice", "es", {"1": "Begoña"}), media=(Media(PDF_URL),)
    )
    await provider.send(invoice, context(http, fake))
    assert [content(p) for p in sent_payloads(fake)] == [
        ("document", {"link": PDF_URL}),
        ("text", {"body": text, "preview_url": False}),
    ]


@pytest.mark.parametrize(
    ("mapping", "media", "says"),
    [
        pytest.param(
            {"name": "factura_lista", "header": "document"}, (), "has 0", id="header-without-file"
        ),
        pytest.param(
            {"name": "factura_lista"}, (Media(PDF_URL),), "declares no header", id="file-no-header"
        ),
        pytest.param(
            {"name": "factura_lista", "header": "document"},
            (Media(PDF_URL), Media(PDF_URL)),
            "has 2",
            id="two-files-one-header",
        ),
        pytest.param(
            {"name": "factura_lista", "header": "pdf"}, (Media(PDF_URL),), "'pdf'", id="bad-kind"
        ),
        pytest.param({"language": "es"}, (), "no name", id="mapping-without-name"),
        pytest.param(
            {"name": "factura_lista", "variables": ["1", "total"]},
            (),
            "lacks: total",
            id="variable-the-message-lacks",
        ),
    ],
)
async def test_a_template_and_files_that_do_not_fit_fail_before_anything_is_sent(
    fake: FakeMeta,
    http: httpx.AsyncClient,
    mapping: dict[str, Any],
    media: tuple[Media, ...],
    says: str,
) -> None:
    invoice = message(template=TemplateRef("invoice", "es", {"1": "Begoña"}), media=media)
    with pytest.raises(ProviderError) as caught:
        await provider.send(invoice, replace(context(http, fake), template=mapping))
    assert (caught.value.code, caught.value.retryable) == ("template_media", False)
    assert says in caught.value.message
    assert "'invoice'" in caught.value.message
    assert fake.requests == []


# Accept time


def test_a_template_with_more_than_one_file_is_refused_at_accept_time() -> None:
    two = message(template=TemplateRef("invoice", "es", {}), media=(Media(PDF_URL), Media(PDF_URL)))
    with pytest.raises(MessageRejected) as refused:
        provider.check_message(two, CREDENTIALS)
    assert refused.value.field == "media"


@pytest.mark.parametrize(
    "accepted",
    [
        pytest.param(message(media=(Media(PDF_URL),)), id="a-file-without-text"),
        pytest.param(
            message(
                body="Fotos", media=tuple(Media(f"https://f.example/{i}.jpg") for i in range(10))
            ),
            id="ten-files-and-text",
        ),
        pytest.param(
            message(template=TemplateRef("invoice", "es", {}), media=(Media(PDF_URL),)),
            id="a-template-and-its-header-file",
        ),
    ],
)
def test_files_are_accepted(accepted: OutboundMessage) -> None:
    provider.check_message(accepted, CREDENTIALS)


# The fake's check: Meta's document with the captions and file names its own examples send


def _recorded(payload: dict[str, Any]) -> RecordedRequest:
    return RecordedRequest(
        method="POST",
        path=f"/v23.0/{PHONE_NUMBER_ID}/messages",
        query=[],
        headers={"content-type": "application/json", "authorization": f"Bearer {ACCESS_TOKEN}"},
        body=json.dumps(payload).encode("utf-8"),
        url="",
    )


def _media_examples() -> list[Any]:
    operation = load_spec("meta")["paths"]["/{Version}/{Phone-Number-ID}/messages"]["post"]
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    return [
        pytest.param({**example["value"], "to": "34600111222"}, id=name)
        for name, example in examples.items()
        if example["value"].get("type") in ("image", "video", "audio", "document", "sticker")
    ]


@pytest.mark.parametrize("example", _media_examples())
def test_the_fake_takes_every_media_message_metas_document_shows(example: dict[str, Any]) -> None:
    validate_meta_request(_recorded(example))


def test_the_documents_schema_alone_refuses_its_own_captioned_examples() -> None:
    # why the fake checks against meta_document(): the schema leaves out what the examples send
    captioned = [e for e in _media_examples() if "caption" in e.values[0][e.values[0]["type"]]]
    assert {e.values[0]["type"] for e in captioned} == {"document", "video"}
    for example in captioned:
        with pytest.raises(RequestViolation):
            validate_request("meta", _recorded(example.values[0]))


def _file(kind: str, **fields: str) -> dict[str, Any]:
    return {"type": kind, kind: fields}


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(
            _file("audio", link="https://f.example/a.ogg", caption="x"), id="audio-caption"
        ),
        pytest.param(
            _file("sticker", link="https://f.example/s.webp", caption="x"), id="sticker-caption"
        ),
        pytest.param(
            _file("image", link="https://f.example/a.jpg", filename="a.jpg"), id="image-filename"
        ),
        pytest.param(
            _file("document", link="https://f.example/a.pdf", name="a.pdf"),
            id="misspelled-filename",
        ),
        pytest.param(_file("document", caption="x"), id="neither-link-nor-id"),
    ],
)
def test_the_fake_still_refuses_what_meta_does_not_take(payload: dict[str, Any]) -> None:
    request = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "34600111222"}
    with pytest.raises(RequestViolation):
        validate_meta_request(_recorded({**request, **payload}))
