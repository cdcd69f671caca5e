"""The console provider writes what a message carries besides its text: the template it uses,
its files by URL and its attachments by name, type and size (never their bytes)."""

from __future__ import annotations

import httpx
import structlog
from pipecored_console import ConsoleProvider

from pipecored import Attachment, Media, OutboundMessage, TemplateRef
from tests.plugins.support import email_message, send_context

PDF = b"%PDF-1.4\n% factura \xc3\xb1\n"


async def test_files_and_attachments_are_logged_without_their_bytes(
    http: httpx.AsyncClient,
) -> None:
    whatsapp = OutboundMessage(
        id="msg_c1",
        tenant_id="demo",
        channel="whatsapp",
        to=("+34600111222",),
        body="Hola Begoña, tu pedido está confirmado.",
        template=TemplateRef("order_confirmation", "es", {"1": "Begoña"}),
        media=(Media("https://files.example.com/pedido.jpg", caption="Tu pedido"),),
    )
    mail = email_message(
        "msg_c2",
        attachments=(
            Attachment("factura.pdf", content=PDF, content_type="application/pdf"),
            Attachment("menu.pdf", url="https://files.example.com/menu.pdf"),
        ),
    )
    provider = ConsoleProvider()
    with structlog.testing.capture_logs() as logs:
        for message in (whatsapp, mail):
            ctx = send_context(http, "", tenant_id="demo", channel=message.channel, credentials={})
            result = await provider.send(message, ctx)
            assert result.status == "delivered"
    first, second = [entry for entry in logs if entry["event"] == "console.message"]
    assert first["template"] == "order_confirmation"
    assert first["media"] == ["https://files.example.com/pedido.jpg"]
    assert second["attachments"] == [
        {
            "filename": "factura.pdf",
            "content_type": "application/pdf",
            "size": len(PDF),
            "url": None,
        },
        {
            "filename": "menu.pdf",
            "content_type": None,
            "size": None,
            "url": "https://files.example.com/menu.pdf",
        },
    ]
    assert "JVBER" not in repr(logs)  # the PDF's base64
