"""A send request's body, validated into the typed outbound message.

The body's shape is the channel's kind: ``text`` channels (whatsapp, sms and plugin channels
such as ``chat``) take ``{"to", "body"}`` with the channel's own address check and length bound;
``email`` takes the email fields. Every error names the field, as the client wrote it.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from pipecored.channels import Channel, email_address
from pipecored.errors import ValidationFailed
from pipecored.mailboxes import parse_mailbox
from pipecored.provider import Attachment, Media, OutboundMessage

# An email subject line takes 998 characters (RFC 5322).
SUBJECT_LIMIT = 998
MAX_RECIPIENTS = 50


def validation_failed(exc: ValidationError) -> ValidationFailed:
    """pydantic's first error as the API's 422, naming the field."""
    err = exc.errors(include_url=False, include_input=False)[0]
    field = ".".join(str(p) for p in err["loc"]) or "body"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown field"
    elif err["type"] == "missing":
        message = "required"
    return ValidationFailed(f"{field}: {message}", field=field)


def _one_line(value: str) -> str:
    """A value that becomes (part of) an email header: a CR or LF would end the header and let
    the sender write headers of its own (header injection)."""
    if "\r" in value or "\n" in value:
        raise ValueError("may not contain a line break (CR or LF)")
    return value


def _headers(value: dict[str, str]) -> dict[str, str]:
    for name, text in value.items():
        if not name or any(c in name for c in "\r\n:") or not name.isascii():
            raise ValueError(f"{name!r}: not a header name")
        try:
            _one_line(text)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return value


def _mailbox(value: str) -> str:
    """``addr@example.com`` or ``Name <addr@example.com>``: the one mailbox parser the
    providers' sender-domain check uses too, so the two cannot read a ``from`` differently."""
    _one_line(value)
    if parse_mailbox(value) is None:
        raise ValueError("not a valid email address or 'Name <address>'")
    return value


EmailAddress = Annotated[str, AfterValidator(email_address)]
Mailbox = Annotated[str, AfterValidator(_mailbox)]
OneLine = Annotated[str, AfterValidator(_one_line)]
Headers = Annotated[dict[str, str], AfterValidator(_headers)]


def _recipients(value: Any) -> str | list[str]:
    """One address or a list of them, kept as the client gave it.

    One validator rather than a ``str | list`` union: a union reports an error once per member,
    under pydantic's internal member names, so the client would read ``to.function-after[...]:
    Input should be a valid string`` for a bad address in a list.
    """
    if isinstance(value, str):
        return email_address(value)
    if not isinstance(value, list):
        raise ValueError("expected an email address or a list of them")
    if not 1 <= len(value) <= MAX_RECIPIENTS:
        raise ValueError(f"expected 1 to {MAX_RECIPIENTS} addresses")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise ValueError(f"item {index}: expected an email address")
        try:
            email_address(item)
        except ValueError as exc:
            raise ValueError(f"item {index}: {exc}") from None
    return list(value)


Recipients = Annotated[
    str | list[str],
    PlainValidator(_recipients),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {
                    "type": "array",
                    "items": {"type": "string"},
                    "minItems": 1,
                    "maxItems": MAX_RECIPIENTS,
                },
            ]
        }
    ),
]


NUL_REFUSED = "may not contain a NUL character (U+0000)"


def _refuse_nul(value: Any) -> None:
    """Raise when ``value`` (text, or the names and items it holds) has a NUL character."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(NUL_REFUSED)
    elif isinstance(value, dict):
        for name, item in value.items():
            if "\x00" in name:
                raise ValueError(f"a name {NUL_REFUSED}")
            try:
                _refuse_nul(item)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            try:
                _refuse_nul(item)
            except ValueError as exc:
                raise ValueError(f"item {index}: {exc}") from None


class Body(BaseModel):
    """A request body of the API: unknown fields refused, camelCase names.

    No text in it may hold a NUL (U+0000): JSON can carry one (``"\\u0000"``), but it is no
    character of a message, an email header or a file name, and PostgreSQL ``text`` cannot
    store one. The client gets a 422 naming the field, the same on every store, before anything
    is stored or sent.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=False
    )

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # a nested body has checked its own fields (with their names)
        if not isinstance(value, Body):
            _refuse_nul(value)
        return value


def _public_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/?#]+[^\s]*\Z", value):
        raise ValueError("expected an http:// or https:// URL the provider can fetch")
    return value


def _filename(value: str) -> str:
    if any(c in value for c in "/\\\r\n\x00") or value in (".", ".."):
        raise ValueError("a file name, without a path or line breaks")
    return value


PublicUrl = Annotated[str, AfterValidator(_public_url)]
FileName = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_filename)]
# 35 days: as far ahead as a send may be scheduled
MAX_SCHEDULE_AHEAD = 35 * 86400.0
MAX_MEDIA = 10  # Twilio's MediaUrl limit


class TemplateSend(Body):
    name: str = Field(min_length=1, max_length=64)
    language: str | None = Field(default=None, min_length=2, max_length=16)
    variables: dict[str, Annotated[str, Field(max_length=1024)]] = {}


class MediaItem(Body):
    url: PublicUrl
    filename: FileName | None = None
    caption: str | None = Field(default=None, max_length=1024)


class AttachmentItem(Body):
    filename: FileName
    content: str | None = None  # base64
    url: PublicUrl | None = None
    content_type: OneLine | None = Field(default=None, max_length=255)

    @model_validator(mode="after")
    def _content_or_url(self) -> AttachmentItem:
        if (self.content is None) == (self.url is None):
            raise ValueError("give either content (base64) or url")
        return self


class Scheduling(Body):
    send_at: datetime | None = None
    urgent: bool = False

    @field_validator("send_at")
    @classmethod
    def _with_offset(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("expected an ISO 8601 time with its UTC offset (…Z or …+01:00)")
        return value


class TextSend(Scheduling):
    to: str
    body: str | None = Field(default=None, min_length=1)
    template: TemplateSend | None = None
    media: list[MediaItem] | None = Field(default=None, min_length=1, max_length=MAX_MEDIA)

    @model_validator(mode="after")
    def _something_to_send(self) -> TextSend:
        if self.body is not None and self.template is not None:
            raise ValueError("send a body or a template, not both")
        if self.body is None and self.template is None and not self.media:
            raise ValueError("required (or a template, or media)")
        return self


class EmailSend(Scheduling):
    to: Recipients
    subject: OneLine = Field(min_length=1, max_length=SUBJECT_LIMIT)
    html_content: str = Field(min_length=1)
    text_content: str | None = None
    from_: Mailbox | None = Field(default=None, alias="from")
    reply_to: Recipients | None = None
    cc: Recipients | None = None
    bcc: Recipients | None = None
    headers: Headers | None = None
    tags: dict[str, str] | None = None
    attachments: list[AttachmentItem] | None = Field(default=None, min_length=1, max_length=50)


def body_schema(channel: Channel, *, ref_template: str) -> dict[str, Any]:
    """The JSON Schema of a send to ``channel`` (without the tenant id fields); the shapes it
    nests are in its ``$defs``, referred to with ``ref_template``."""
    if channel.kind == "email":
        return EmailSend.model_json_schema(by_alias=True, ref_template=ref_template)
    schema = TextSend.model_json_schema(by_alias=True, ref_template=ref_template)
    schema["properties"]["to"] = dict(channel.address_schema or {"type": "string"})
    schema["properties"]["body"]["maxLength"] = channel.max_body
    return schema


def _listed(value: str | list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True, slots=True)
class ParsedSend:
    message: OutboundMessage
    to: str | list[str]  # as the client gave it (one address or a list): what the log shows
    template: TemplateSend | None  # to resolve against the tenant's catalogue
    send_at: float | None
    urgent: bool


def parse_send(
    channel: Channel, data: dict[str, Any], *, message_id: str, tenant_id: str, now: float
) -> ParsedSend:
    """The typed message a send body asks for. ``data`` has had the tenant id taken out; a
    template is resolved by the caller, against the tenant's catalogue."""
    try:
        if channel.kind == "email":
            email_body = EmailSend.model_validate(data)
        else:
            text_body = TextSend.model_validate(data)
    except ValidationError as exc:
        raise validation_failed(exc) from None
    scheduling: Scheduling = email_body if channel.kind == "email" else text_body
    send_at = _send_at(scheduling.send_at, now)
    if channel.kind != "email":
        try:
            to = channel.check_address(text_body.to)
        except ValueError as exc:
            raise ValidationFailed(f"to: {exc}", field="to") from None
        if text_body.body is not None and len(text_body.body) > channel.max_body:
            raise ValidationFailed(
                f"body: String should have at most {channel.max_body} characters", field="body"
            )
        message = OutboundMessage(
            id=message_id,
            tenant_id=tenant_id,
            channel=channel.name,
            to=(to,),
            body=text_body.body,
            media=tuple(Media(m.url, m.filename, m.caption) for m in text_body.media or ()),
        )
        return ParsedSend(message, to, text_body.template, send_at, text_body.urgent)
    message = OutboundMessage(
        id=message_id,
        tenant_id=tenant_id,
        channel=channel.name,
        to=_listed(email_body.to),
        subject=email_body.subject,
        html=email_body.html_content,
        text=email_body.text_content,
        sender=email_body.from_,
        reply_to=_listed(email_body.reply_to),
        cc=_listed(email_body.cc),
        bcc=_listed(email_body.bcc),
        headers=email_body.headers or {},
        tags=email_body.tags or {},
        attachments=tuple(_attachment(i, a) for i, a in enumerate(email_body.attachments or ())),
    )
    return ParsedSend(message, email_body.to, None, send_at, email_body.urgent)


def _send_at(value: datetime | None, now: float) -> float | None:
    if value is None:
        return None
    at = value.timestamp()
    if at <= now:
        raise ValidationFailed("sendAt: in the past", field="sendAt")
    if at > now + MAX_SCHEDULE_AHEAD:
        raise ValidationFailed("sendAt: more than 35 days ahead", field="sendAt")
    return at


def _attachment(index: int, item: AttachmentItem) -> Attachment:
    content = None
    if item.content is not None:
        try:
            content = base64.b64decode(item.content, validate=True)
        except (binascii.Error, ValueError):
            field = f"attachments.{index}.content"
            raise ValidationFailed(f"{field}: not base64", field=field) from None
    return Attachment(item.filename, content, item.url, item.content_type)
