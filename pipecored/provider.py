"""The types a provider plugin programs against.

A provider is an object registered through the ``register_providers(register)`` hook. The host
calls :meth:`Provider.send` to deliver one message and :meth:`Provider.handle_webhook` for each
callback that the provider makes to ``/messaging/webhook/{channel}``. Everything a call needs
(the tenant's credentials, the base URL, the shared HTTP client) arrives in a context object, so a
provider instance holds no per-tenant state and one instance serves every tenant.

Text in the results and callbacks a plugin builds is kept as given, except that a NUL character
or a lone UTF-16 surrogate becomes U+FFFD (:func:`storable_text`): no store could keep it
otherwise.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, ClassVar, Literal

import httpx

from pipecored.channels import STANDARD_CHANNELS, Channel
from pipecored.errors import NotFound

# The standard channels' names. A plugin may declare more (``Provider.declared_channels``).
CHANNELS: tuple[str, ...] = tuple(c.name for c in STANDARD_CHANNELS)

DeliveryStatus = Literal["sent", "delivered", "read", "failed"]


# A NUL (U+0000), which PostgreSQL ``text`` cannot hold, and a UTF-16 surrogate on its own
# (U+D800-U+DFFF), which has no UTF-8 form for either store to write: JSON's "\ud800" escape,
# which json.loads (httpx's Response.json()) accepts, decodes to one.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(text: str) -> str:
    """``text`` as every store can keep it: each NUL and each lone surrogate (see above)
    replaced by U+FFFD (the replacement character).

    What a provider tells us (an error message, a callback, a customer's reply) is data we must
    not lose, and a write it made fail would be retried forever (a delivery outcome stops the
    worker claiming until it is written; a refused callback is sent again). So it is made
    storable where it reaches pipecored, before any store sees it, and both stores keep the same
    text: the results and callbacks a plugin builds (the types below) and the ``ProviderError``
    a send raises (``pipecored.policy.classify``).
    """
    return _UNSTORABLE.sub("\ufffd", text)


def _storable_fields(value: Any) -> None:
    """``__post_init__`` of the types a plugin hands the host: every text field storable."""
    for item in fields(value):
        text = getattr(value, item.name)
        if isinstance(text, str) and _UNSTORABLE.search(text):
            object.__setattr__(value, item.name, storable_text(text))


@dataclass(frozen=True, slots=True)
class CredentialField:
    """One credential a provider needs, as tenant files and the config API name it."""

    name: str
    secret: bool = False
    required: bool = True
    description: str = ""
    channels: frozenset[str] | None = None  # required only for these channels (None: all)
    # An optional credential whose absence costs something: ``check`` and the daemon warn with
    # this text when it is left out (Meta's appSecret: without it, no webhook is accepted).
    missing_warning: str | None = None

    def required_for(self, channel: str) -> bool:
        return self.required and (self.channels is None or channel in self.channels)


@dataclass(frozen=True, slots=True)
class Media:
    """A file sent with a WhatsApp message or an MMS, by a public URL the provider fetches."""

    url: str
    filename: str | None = None  # shown for documents
    caption: str | None = None


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to an email: its bytes, or a URL the provider fetches."""

    filename: str
    content: bytes | None = None
    url: str | None = None
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class TemplateRef:
    """The tenant's template a message uses: its logical name, language and variables. What the
    provider calls it is ``SendContext.template``; when the tenant maps none for the provider,
    the message's ``body`` holds the template's text with the variables filled in."""

    name: str
    language: str
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message to deliver, exactly as the client sent it (text is byte-exact UTF-8)."""

    id: str
    tenant_id: str
    channel: str
    to: tuple[str, ...]
    body: str | None = None  # whatsapp, sms
    subject: str | None = None  # email
    html: str | None = None  # email
    text: str | None = None  # email
    sender: str | None = None  # the send's "from", already checked against the tenant's config
    reply_to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    template: TemplateRef | None = None  # whatsapp, sms
    media: tuple[Media, ...] = ()  # whatsapp, sms (MMS)
    attachments: tuple[Attachment, ...] = ()  # email


@dataclass(frozen=True, slots=True)
class SendContext:
    """What one send needs besides the message."""

    tenant_id: str
    channel: str
    credentials: Mapping[str, str]
    base_url: str
    http: httpx.AsyncClient
    timeout: float
    # this tenant's webhook URL for the provider, when server.publicUrl is set
    status_callback_url: str | None = None
    # the plugin's default_settings, overlaid with the daemon file's providers.NAME (apiVersion)
    # and plugins.NAME (whatever settings the plugin defines)
    settings: Mapping[str, Any] = field(default_factory=dict)
    # This provider's own template for ``message.template``, as the tenant's ``templates``
    # catalogue maps it (Meta: ``{"name", "language"}``; Twilio: ``{"contentSid"}``); None when
    # the message uses no template or the tenant maps none for this provider (then
    # ``message.body`` holds the template's text).
    template: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    """The provider accepted the message."""

    provider_message_id: str
    status: Literal["sent", "delivered"] = "sent"
    http_status: int | None = None

    def __post_init__(self) -> None:
        _storable_fields(self)


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A provider's callback, as received.

    ``url`` is the URL the provider called: ``server.publicUrl`` + path + query when a public URL
    is configured (what providers sign), else the URL the request arrived on.
    """

    method: str
    url: str
    headers: Mapping[str, str]  # lower-case names
    query: Sequence[tuple[str, str]]
    body: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookContext:
    tenant_id: str
    channel: str
    credentials: Mapping[str, str]
    settings: Mapping[str, Any] = field(default_factory=dict)
    # False only when the tenant's channel turned signature checks off for local development
    # (``verifyWebhookSignatures: false``): the plugin then parses without verifying.
    verify_signatures: bool = True
    # For a callback that only refers to what it is about (Resend's email.received carries no
    # body): the shared outbound client, the route's base URL and the delivery timeout, to fetch
    # it with. A ``ProviderError`` the plugin raises makes the host answer 503, so the provider
    # calls again later. ``http`` is None in a context built without a host.
    http: httpx.AsyncClient | None = None
    base_url: str = ""
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """A delivery status for a message we sent, found by provider id or by our own id."""

    status: DeliveryStatus
    provider_message_id: str | None = None
    message_id: str | None = None  # ours, when the provider echoes custom data
    error_code: str | None = None
    error_message: str | None = None
    occurred_at: datetime | None = None

    def __post_init__(self) -> None:
        _storable_fields(self)


OptOutReason = Literal["bounce", "complaint", "unsubscribe"]


@dataclass(frozen=True, slots=True)
class RecipientOptOut:
    """An address the provider says must not be sent to any more: a hard (permanent) bounce, a
    spam complaint, or an unsubscribe. The host suppresses it for the tenant on the callback's
    channel (SPEC section 9); a send to it is then refused with ``recipient_suppressed``.

    Report it beside the message's own ``StatusEvent``: the two are separate facts (an
    unsubscribe does not fail the message that carried the link)."""

    address: str
    reason: OptOutReason
    provider_message_id: str | None = None
    detail: str | None = None  # the provider's words (a bounce's diagnostic), for the list

    def __post_init__(self) -> None:
        _storable_fields(self)


@dataclass(frozen=True, slots=True)
class InboundMedia:
    """A file a customer sent (a photo, a voice note, a document), as the provider describes
    it: its kind (``image``, ``audio``, ``video``, ``document``, ``sticker``), MIME type, and the
    provider's media id or URL to fetch it with."""

    kind: str
    mime_type: str | None = None
    provider_media_id: str | None = None
    url: str | None = None
    caption: str | None = None
    filename: str | None = None

    def __post_init__(self) -> None:
        _storable_fields(self)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message a customer sent to the tenant (a WhatsApp reply, an SMS)."""

    sender: str
    recipient: str
    body: str
    provider_message_id: str | None = None
    subject: str | None = None
    occurred_at: datetime | None = None
    media: tuple[InboundMedia, ...] = ()  # each made storable when it was built

    def __post_init__(self) -> None:
        _storable_fields(self)


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class WebhookResult:
    events: Sequence[StatusEvent | InboundMessage | RecipientOptOut] = ()
    response: WebhookResponse = field(default_factory=WebhookResponse)


class Provider(abc.ABC):
    """Base class of every provider. Subclasses set the class attributes and implement ``send``.

    ``send`` raises :class:`pipecored.ProviderError` (or ``ProviderTimeout``) on failure, with
    ``retryable`` set from the provider's documentation. Transport errors and timeouts from the
    shared ``httpx`` client that escape ``send`` are classified by the host as retryable.
    """

    name: ClassVar[str]
    channels: ClassVar[frozenset[str]]
    # Channels beyond the standard three that this provider brings (a ``chat`` or ``push``
    # channel, with its address check); tenants can then configure them like any other.
    declared_channels: ClassVar[tuple[Channel, ...]] = ()
    credentials: ClassVar[tuple[CredentialField, ...]] = ()
    default_base_url: ClassVar[str] = ""
    default_settings: ClassVar[Mapping[str, Any]] = {}

    @abc.abstractmethod
    async def send(self, message: OutboundMessage, ctx: SendContext) -> SendResult:
        """Deliver one message; return the provider's id for it."""

    def check_message(self, message: OutboundMessage, credentials: Mapping[str, str]) -> None:
        """Refuse at accept time a message this provider could never send for this tenant, by
        raising ``MessageRejected(field, reason)`` (the client gets 422 naming the field): a
        ``from`` outside the tenant's sending domain, say. Called before the message is stored;
        must not do I/O."""

    async def handle_webhook(self, request: WebhookRequest, ctx: WebhookContext) -> WebhookResult:
        """Verify a callback (raise ``WebhookSignatureError`` first thing if it does not verify),
        then parse it into status events and inbound messages."""
        raise NotFound(f"provider {self.name} takes no webhooks", code="webhook_not_supported")

    def secret_names(self) -> frozenset[str]:
        return frozenset(c.name for c in self.credentials if c.secret)
