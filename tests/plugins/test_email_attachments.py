"""Email attachments (SPEC section 7) in each provider's own format, each request checked by the
provider's fake against its OpenAPI document as it arrives, and each provider's size limit at
accept time: Resend 40 MB per email after base64, SendGrid 30 MB per email (base64, as the
attachments travel)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pipecored_resend import ResendProvider
from pipecored_sendgrid import SendGridProvider

from pipecored import Attachment, MessageRejected, OutboundMessage
from tests.fakes.resend import FakeResend
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.specs import validate_request
from tests.plugins.support import email_message, send_context

RESEND_KEY = "re_genda_0123456789abcdef"
SENDGRID_KEY = "SG.roe_key.0123456789abcdefghijklmnopqrstuvwxyz"
RESEND = {"apiKey": RESEND_KEY, "fromEmail": "citas@genda.health"}
SENDGRID = {"apiKey": SENDGRID_KEY, "fromEmail": "pedidos@roe.shop"}
PDF = b"%PDF-1.4\n% receta de Genda \xc3\xb1\n%%EOF\n"

resend = ResendProvider()
sendgrid = SendGridProvider()


@pytest.fixture(scope="module")
def shared_resend() -> Iterator[FakeResend]:
    with FakeResend(api_key=RESEND_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def shared_sendgrid() -> Iterator[FakeSendGrid]:
    with FakeSendGrid(api_key=SENDGRID_KEY) as server:
        yield server


@pytest.fixture
def resend_fake(shared_resend: FakeResend) -> Iterator[FakeResend]:
    shared_resend.reset()
    yield shared_resend
    shared_resend.raise_violations()


@pytest.fixture
def sendgrid_fake(shared_sendgrid: FakeSendGrid) -> Iterator[FakeSendGrid]:
    shared_sendgrid.reset()
    yield shared_sendgrid
    shared_sendgrid.raise_violations()


def email(*attachments: Attachment) -> OutboundMessage:
    return email_message("msg_mail_1", attachments=attachments)


def mb(count: int) -> bytes:
    return b"x" * count


async def test_resend_gets_base64_content_and_paths(
    resend_fake: FakeResend, http: httpx.AsyncClient
) -> None:
    mail = email(
        Attachment("receta ñ.pdf", content=PDF, content_type="application/pdf"),
        Attachment("indicaciones.pdf", url="https://files.genda.health/indicaciones.pdf"),
    )
    resend.check_message(mail, RESEND)
    ctx = send_context(
        http, resend_fake.url, tenant_id="genda_456", channel="email", credentials=RESEND
    )
    await resend.send(mail, ctx)
    (request,) = resend_fake.requests
    validate_request("resend", request)
    (sent,) = resend_fake.emails
    assert sent["attachments"] == [
        {
            "filename": "receta ñ.pdf",
            "content": base64.b64encode(PDF).decode("ascii"),
            "content_type": "application/pdf",
        },
        {"filename": "indicaciones.pdf", "path": "https://files.genda.health/indicaciones.pdf"},
    ]


async def test_sendgrid_gets_base64_content_with_a_type_from_the_file_name(
    sendgrid_fake: FakeSendGrid, http: httpx.AsyncClient
) -> None:
    # the send gave no contentType: SendGrid's type comes from the file's extension
    mail = email(Attachment("factura-123.pdf", content=PDF), Attachment("datos", content=b"\x00"))
    sendgrid.check_message(mail, SENDGRID)
    ctx = send_context(
        http, sendgrid_fake.url, tenant_id="roe_789", channel="email", credentials=SENDGRID
    )
    await sendgrid.send(mail, ctx)
    (request,) = sendgrid_fake.requests
    validate_request("sendgrid", request)
    (sent,) = sendgrid_fake.messages
    assert sent["attachments"] == [
        {
            "content": base64.b64encode(PDF).decode("ascii"),
            "filename": "factura-123.pdf",
            "type": "application/pdf",
            "disposition": "attachment",
        },
        {
            "content": "AA==",
            "filename": "datos",
            "type": "application/octet-stream",
            "disposition": "attachment",
        },
    ]


# Sizes: what each provider takes, counted as it travels (base64: 4 bytes for every 3)


@pytest.mark.parametrize(
    ("attachments", "accepted"),
    [
        # 30,000,000 bytes are 40,000,000 in base64: the limit exactly
        pytest.param([mb(30_000_000)], True, id="40-mb-after-base64"),
        pytest.param([mb(30_000_001)], False, id="one-byte-over"),
        pytest.param([mb(15_000_000), mb(15_000_003)], False, id="two-over-together"),
    ],
)
def test_resend_takes_40_mb_per_email_after_base64(
    attachments: list[bytes], accepted: bool
) -> None:
    check(resend, RESEND, attachments, accepted, "40 MB")


@pytest.mark.parametrize(
    ("attachments", "accepted"),
    [
        pytest.param([mb(22_500_000)], True, id="30-mb-after-base64"),
        # 23 MB of bytes are 30.67 MB as sent: over, although the bytes alone are not
        pytest.param([mb(23_000_000)], False, id="under-30-mb-raw-over-in-base64"),
        pytest.param([mb(11_250_000), mb(11_250_003)], False, id="two-over-together"),
    ],
)
def test_sendgrid_takes_30_mb_per_email_as_sent(attachments: list[bytes], accepted: bool) -> None:
    check(sendgrid, SENDGRID, attachments, accepted, "30 MB")


def check(
    provider: Any,
    credentials: dict[str, str],
    contents: list[bytes],
    accepted: bool,
    limit: str,
) -> None:
    mail = email(*(Attachment(f"f{i}.bin", content=c) for i, c in enumerate(contents)))
    if accepted:
        provider.check_message(mail, credentials)
        return
    with pytest.raises(MessageRejected) as refused:
        provider.check_message(mail, credentials)
    assert refused.value.field == "attachments"
    assert limit in refused.value.message


def test_sendgrid_refuses_an_attachment_by_url_naming_the_field() -> None:
    mail = email(Attachment("menu.pdf", url="https://files.roe.shop/menu.pdf"))
    with pytest.raises(MessageRejected) as refused:
        sendgrid.check_message(mail, SENDGRID)
    assert refused.value.field == "attachments"
    # Resend fetches it itself
    resend.check_message(mail, RESEND)
