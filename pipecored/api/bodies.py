"""Reading request bodies: size limit while reading, JSON only, validated into models whose
errors name the field."""

from __future__ import annotations

import email.utils
import json
import re
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
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
from starlette.requests import Request

from pipecored.errors import (
    BadRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from pipecored.provider import CHANNELS

MAX_JSON_DEPTH = 32
# [0-9], not \d: on str patterns \d is any Unicode decimal digit ("+1٣٣٣٣٣٣٣٣", full-width
# digits), which no provider dials. The same text is the documented JSON Schema pattern.
E164_PATTERN = r"^\+[1-9][0-9]{7,14}$"
E164 = re.compile(E164_PATTERN)

# Longest text each channel takes: SMS concatenates up to 10 segments (Twilio's 1,600
# characters), WhatsApp text messages take 4,096, an email subject line 998 (RFC 5322).
BODY_LIMITS = {"sms": 1600, "whatsapp": 4096}
SUBJECT_LIMIT = 998
MAX_RECIPIENTS = 50


async def read_body(request: Request, *, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(f"body over {limit} bytes")
        except ValueError:
            raise BadRequest("invalid Content-Length", code="bad_request") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # NaN and Infinity are not JSON


def _depth(value: Any, limit: int) -> int:
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


# JSON lets "\ud800" stand alone, but such a string cannot be encoded as UTF-8: it passed
# validation (pydantic takes it in dict keys and some unions) and then failed in the store
# (a 503 blaming the store) or in the Idempotency-Key digest (a 500).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(data: Any) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


async def read_json(request: Request, *, limit: int) -> Any:
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType("send the body as Content-Type: application/json")
    raw = await read_body(request, limit=limit)
    try:
        text = raw.decode("utf-8")
        data = _DECODER.decode(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("the body is not valid UTF-8 JSON") from None
    if _depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise BadRequest(f"JSON nested deeper than {MAX_JSON_DEPTH} levels", code="json_too_deep")
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(data):
        raise BadRequest("the body has a \\u escape of a lone UTF-16 surrogate, which is not text")
    return data


def validation_failed(exc: ValidationError) -> ValidationFailed:
    err = exc.errors(include_url=False, include_input=False)[0]
    field = ".".join(str(p) for p in err["loc"]) or "body"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown field"
    elif err["type"] == "missing":
        message = "required"
    return ValidationFailed(f"{field}: {message}", field=field)


def json_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationFailed("body: expected a JSON object", field="body")
    return data


def take_tenant_id(body: dict[str, Any]) -> str | None:
    """Pop ``tenant_id`` / ``tenantId`` (aliases of each other) from a body."""
    snake = body.pop("tenant_id", None)
    camel = body.pop("tenantId", None)
    if snake is not None and camel is not None and snake != camel:
        raise ValidationFailed("tenant_id: differs from tenantId", field="tenant_id")
    value = snake if snake is not None else camel
    if value is not None and (not isinstance(value, str) or not value):
        raise ValidationFailed("tenant_id: expected a non-empty string", field="tenant_id")
    return value


# -- field types -------------------------------------------------------------------------------


def _phone(value: str) -> str:
    # fullmatch: with match, "$" would let a trailing newline through
    if not E164.fullmatch(value):
        raise ValueError("expected a phone number in E.164 form: + and 8 to 15 digits")
    return value


def _email(value: str) -> str:
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address ({exc})") from None
    return value


def _mailbox(value: str) -> str:
    """``addr@example.com`` or ``Name <addr@example.com>``."""
    _, address = email.utils.parseaddr(value)
    if not address:
        raise ValueError("not a valid email address")
    _email(address)
    return value


# The pattern in the document lets clients (and schemathesis) know what a number looks like.
Phone = Annotated[
    str, AfterValidator(_phone), WithJsonSchema({"type": "string", "pattern": E164_PATTERN})
]
# A WhatsApp number may come Twilio-style, "whatsapp:+34...": send_payload strips the prefix
# before validation, and the document says so.
WhatsappPhone = Annotated[
    str,
    AfterValidator(_phone),
    WithJsonSchema({"type": "string", "pattern": "^(whatsapp:)?" + E164_PATTERN.removeprefix("^")}),
]
EmailAddress = Annotated[str, AfterValidator(_email)]
Mailbox = Annotated[str, AfterValidator(_mailbox)]


def _recipients(value: Any) -> str | list[str]:
    """One address or a list of them, kept as the client gave it.

    One validator rather than a ``str | list`` union: a union reports an error once per member,
    under pydantic's internal member names, so the client would read ``to.function-after[...]:
    Input should be a valid string`` for a bad address in a list.
    """
    if isinstance(value, str):
        return _email(value)
    if not isinstance(value, list):
        raise ValueError("expected an email address or a list of them")
    if not 1 <= len(value) <= MAX_RECIPIENTS:
        raise ValueError(f"expected 1 to {MAX_RECIPIENTS} addresses")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise ValueError(f"item {index}: expected an email address")
        try:
            _email(item)
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


class SmsSend(Body):
    to: Phone
    body: str = Field(min_length=1, max_length=BODY_LIMITS["sms"])


class WhatsappSend(Body):
    to: WhatsappPhone
    body: str = Field(min_length=1, max_length=BODY_LIMITS["whatsapp"])


class EmailSend(Body):
    to: Recipients
    subject: str = Field(min_length=1, max_length=SUBJECT_LIMIT)
    html_content: str = Field(min_length=1)
    text_content: str | None = None
    from_: Mailbox | None = Field(default=None, alias="from")
    reply_to: Recipients | None = None
    cc: Recipients | None = None
    bcc: Recipients | None = None
    headers: dict[str, str] | None = None
    tags: dict[str, str] | None = None


SEND_BODIES: dict[str, type[Body]] = {"sms": SmsSend, "whatsapp": WhatsappSend, "email": EmailSend}


def _listed(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def send_payload(channel: str, data: dict[str, Any]) -> tuple[dict[str, Any], str | list[str]]:
    """Validate a send body; returns the stored payload and ``to`` as the client gave it."""
    if channel == "whatsapp" and isinstance(data.get("to"), str):
        # Twilio-style addresses are accepted and stored plain; providers add their own prefix.
        data = {**data, "to": data["to"].removeprefix("whatsapp:")}
    try:
        parsed = SEND_BODIES[channel].model_validate(data)
    except ValidationError as exc:
        raise validation_failed(exc) from None
    if isinstance(parsed, SmsSend | WhatsappSend):
        return {"to": [parsed.to], "body": parsed.body}, parsed.to
    assert isinstance(parsed, EmailSend)
    payload: dict[str, Any] = {
        "to": _listed(parsed.to),
        "subject": parsed.subject,
        "html": parsed.html_content,
        "text": parsed.text_content,
        "sender": parsed.from_,
        "reply_to": _listed(parsed.reply_to),
        "cc": _listed(parsed.cc),
        "bcc": _listed(parsed.bcc),
        "headers": parsed.headers or {},
        "tags": parsed.tags or {},
    }
    return payload, parsed.to


class ConfigProviderBody(Body):
    # Validated as a string so that set_provider's message lists the channels; documented as
    # the enum it is.
    channel: str = Field(json_schema_extra={"enum": list(CHANNELS)})
    provider: str = Field(min_length=1)
    credentials: dict[str, str] = {}
    is_active: bool = True
