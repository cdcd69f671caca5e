"""A send request's body, validated into the typed outbound message.

The body's shape is the channel's kind: ``text`` channels (whatsapp, sms and plugin channels
such as ``chat``) take ``{"to", "body"}`` with the channel's own address check and length bound;
``email`` takes the email fields. Every error names the field, as the client wrote it.
"""

from __future__ import annotations

import email.utils
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

from pipecored.channels import Channel, email_address
from pipecored.errors import ValidationFailed
from pipecored.provider import OutboundMessage

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
    """``addr@example.com`` or ``Name <addr@example.com>``."""
    _one_line(value)
    _, address = email.utils.parseaddr(value)
    if not address:
        raise ValueError("not a valid email address")
    email_address(address)
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


class Body(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=False
    )


class TextSend(Body):
    to: str
    body: str = Field(min_length=1)


class EmailSend(Body):
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


def body_schema(channel: Channel) -> dict[str, Any]:
    """The JSON Schema of a send to ``channel`` (without the tenant id fields)."""
    if channel.kind == "email":
        return EmailSend.model_json_schema(by_alias=True)
    schema = TextSend.model_json_schema(by_alias=True)
    schema["properties"]["to"] = dict(channel.address_schema or {"type": "string"})
    schema["properties"]["body"]["maxLength"] = channel.max_body
    return schema


def _listed(value: str | list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def parse_send(
    channel: Channel, data: dict[str, Any], *, message_id: str, tenant_id: str
) -> tuple[OutboundMessage, str | list[str]]:
    """The typed message, and ``to`` as the client gave it (one address or a list), which is
    what the log shows. ``data`` has had the tenant id taken out."""
    try:
        if channel.kind == "email":
            email_body = EmailSend.model_validate(data)
        else:
            text_body = TextSend.model_validate(data)
    except ValidationError as exc:
        raise validation_failed(exc) from None
    if channel.kind != "email":
        try:
            to = channel.check_address(text_body.to)
        except ValueError as exc:
            raise ValidationFailed(f"to: {exc}", field="to") from None
        if len(text_body.body) > channel.max_body:
            raise ValidationFailed(
                f"body: String should have at most {channel.max_body} characters", field="body"
            )
        message = OutboundMessage(
            id=message_id, tenant_id=tenant_id, channel=channel.name, to=(to,), body=text_body.body
        )
        return message, to
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
    )
    return message, email_body.to
