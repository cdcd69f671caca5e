"""pipecored: a self-hosted, multi-tenant messaging gateway.

This module is the public plugin API: everything a provider plugin needs, and nothing else.
"""

from __future__ import annotations

import pluggy

from pipecored.alert_receiver import Alert, AlertContext, AlertReceiver
from pipecored.channels import EMAIL, SMS, WHATSAPP, Channel, e164, email_address
from pipecored.errors import (
    AlertSendError,
    MessageRejected,
    ProviderError,
    ProviderTimeout,
    WebhookError,
    WebhookPayloadError,
    WebhookSignatureError,
)
from pipecored.mailboxes import check_sender_domain, parse_mailbox
from pipecored.provider import (
    CHANNELS,
    Attachment,
    CredentialField,
    DeliveryStatus,
    InboundMedia,
    InboundMessage,
    Media,
    OutboundMessage,
    Provider,
    RecipientOptOut,
    SendContext,
    SendResult,
    StatusEvent,
    TemplateRef,
    WebhookContext,
    WebhookRequest,
    WebhookResponse,
    WebhookResult,
)
from pipecored.provider_calls import (
    call_provider,
    parse_retry_after,
    request_provider,
    scrub_secrets,
)
from pipecored.signing import webhook_headers, webhook_signing_key

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("pipecored")

__all__ = [
    "CHANNELS",
    "EMAIL",
    "SMS",
    "WHATSAPP",
    "Alert",
    "AlertContext",
    "AlertReceiver",
    "AlertSendError",
    "Attachment",
    "Channel",
    "CredentialField",
    "DeliveryStatus",
    "InboundMedia",
    "InboundMessage",
    "Media",
    "MessageRejected",
    "OutboundMessage",
    "Provider",
    "ProviderError",
    "ProviderTimeout",
    "RecipientOptOut",
    "SendContext",
    "SendResult",
    "StatusEvent",
    "TemplateRef",
    "WebhookContext",
    "WebhookError",
    "WebhookPayloadError",
    "WebhookRequest",
    "WebhookResponse",
    "WebhookResult",
    "WebhookSignatureError",
    "__version__",
    "call_provider",
    "check_sender_domain",
    "e164",
    "email_address",
    "hookimpl",
    "parse_mailbox",
    "parse_retry_after",
    "request_provider",
    "scrub_secrets",
    "webhook_headers",
    "webhook_signing_key",
]
