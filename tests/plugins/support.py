"""Plain helpers the provider plugin tests share."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
import pytest

from pipecored import OutboundMessage, SendContext, WebhookRequest
from pipecored.testing import SignedWebhook

# What the email providers' tests send: Spanish with accents, emoji and line breaks.
SUBJECT = "¡Reserva confirmada, Begoña! 🎉 Mañana a las 21:00"
HTML = "<p>Hola Begoña,</p>\n<p>Tu mesa para 4 está lista: ¿vienes con niños? 👶🍽️</p>"
TEXT = "Hola Begoña,\nTu mesa para 4 está lista.\n¿Vienes con niños? 👶🍽️\n— TableFlow"

# A send's from that a tenant whose fromEmail is at tableflow.com does not own.
SENDERS_OUTSIDE_THE_DOMAIN = [
    pytest.param(sender, id=name)
    for name, sender in {
        "other-domain": "ventas@otro.com",
        "other-domain-with-name": "TableFlow <noreply@otro.com>",
        "subdomain": "noreply@mail.tableflow.com",
        "suffix-domain": "noreply@tableflow.com.evil.com",
        "two-addresses": "noreply@tableflow.com, spam@otro.com",
        "address-as-display-name": "noreply@tableflow.com <x@otro.com>",
        "no-domain": "reservas",
        "header-injection-crlf": "noreply@tableflow.com\r\nBcc: x@otro.com",
        "header-injection-lf": "noreply@tableflow.com\nBcc: x@otro.com",
    }.items()
]


def send_context(
    http: httpx.AsyncClient,
    base_url: str,
    *,
    tenant_id: str,
    channel: str,
    credentials: Mapping[str, str],
    timeout: float = 5.0,
    **extra: Any,
) -> SendContext:
    return SendContext(
        tenant_id=tenant_id,
        channel=channel,
        credentials=credentials,
        base_url=base_url,
        http=http,
        timeout=timeout,
        **extra,
    )


def email_message(message_id: str, **fields: Any) -> OutboundMessage:
    """tableflow_123's email to Begoña, with ``fields`` changed."""
    values: dict[str, Any] = {
        "id": message_id,
        "tenant_id": "tableflow_123",
        "channel": "email",
        "to": ("begona@example.com",),
        "subject": SUBJECT,
        "html": HTML,
    }
    return OutboundMessage(**{**values, **fields})


def webhook_request(
    url: str, headers: Mapping[str, str], body: bytes, *, received_at: datetime | None = None
) -> WebhookRequest:
    """A POST callback to ``url`` as the host hands it to the plugin."""
    return SignedWebhook("POST", url, headers, body).webhook_request(received_at=received_at)
