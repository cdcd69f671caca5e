"""Provider callbacks as a fake provider makes them, to hand to ``handle_webhook`` or to POST
to a running daemon."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

from pipecored import WebhookRequest


@dataclass(frozen=True)
class SignedWebhook:
    """A callback as a provider would make it: send ``body`` with ``headers`` to ``url``."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes = b""

    def webhook_request(self, *, received_at: datetime | None = None) -> WebhookRequest:
        """The callback as the host hands it to the plugin's ``handle_webhook``."""
        return WebhookRequest(
            method=self.method,
            url=self.url,
            headers={k.lower(): v for k, v in self.headers.items()},
            query=parse_qsl(urlsplit(self.url).query, keep_blank_values=True),
            body=self.body,
            received_at=received_at or datetime.now(UTC),
        )
