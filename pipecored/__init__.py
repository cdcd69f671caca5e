"""pipecored: a self-hosted, multi-tenant messaging gateway.

This module is the public plugin API: everything a provider plugin needs, and nothing else.
"""

from __future__ import annotations

import pluggy

from pipecored.errors import (
    MessageRejected,
    ProviderError,
    ProviderTimeout,
    WebhookError,
    WebhookPayloadError,
    WebhookSignatureError,
)
from pipecored.provider import (
    CHANNELS,
    CredentialField,
    DeliveryStatus,
    InboundMessage,
    OutboundMessage,
    Provider,
    SendContext,
    SendResult,
    StatusEvent,
    WebhookContext,
    WebhookRequest,
    WebhookResponse,
    WebhookResult,
)

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("pipecored")

__all__ = [
    "CHANNELS",
    "CredentialField",
    "DeliveryStatus",
    "InboundMessage",
    "MessageRejected",
    "OutboundMessage",
    "Provider",
    "ProviderError",
    "ProviderTimeout",
    "SendContext",
    "SendResult",
    "StatusEvent",
    "WebhookContext",
    "WebhookError",
    "WebhookPayloadError",
    "WebhookRequest",
    "WebhookResponse",
    "WebhookResult",
    "WebhookSignatureError",
    "__version__",
    "hookimpl",
]
