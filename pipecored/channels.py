"""Channels, as plugins declare them: a name, the shape of a send, and what an address looks like.

pipecored declares the three standard channels (:data:`WHATSAPP`, :data:`SMS`, :data:`EMAIL`);
a provider plugin declares any other channel it serves by listing a :class:`Channel` in its
``declared_channels`` (``chat``, ``push``), and tenants then configure it like the standard ones.
A channel of ``kind="text"`` takes ``{"to", "body"}`` sends, its ``check_address`` deciding what
``to`` may be; ``kind="email"`` takes the email body.

Everything else asks :class:`ChannelSet` (built once from the loaded providers): the API's send
validation, the config loader, the OpenAPI document, the log filters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from pipecored.errors import PipecoreError

if TYPE_CHECKING:
    from pipecored.provider import Provider

CHANNEL_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
_CHANNEL_NAME = re.compile(CHANNEL_NAME_PATTERN)

# [0-9], not \d: on str patterns \d is any Unicode decimal digit ("+1٣٣٣٣٣٣٣٣", full-width
# digits), which no provider dials. The same text is the documented JSON Schema pattern.
E164_PATTERN = r"^\+[1-9][0-9]{7,14}$"
_E164 = re.compile(E164_PATTERN)

AddressCheck = Callable[[str], str]


def e164(value: str) -> str:
    """A phone number in E.164 form that can exist: ``+``, a country code the numbering plan
    knows, and a length that country's numbers can have (libphonenumber's possibility check,
    which does not go stale as new ranges open the way a validity check does)."""
    # fullmatch: with match, "$" would let a trailing newline through
    if not _E164.fullmatch(value):
        raise ValueError("expected a phone number in E.164 form: + and 8 to 15 digits")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError("not a phone number any country dials") from None
    country = number.country_code or 0
    if phonenumbers.region_code_for_country_code(country) == "ZZ":
        raise ValueError(f"+{number.country_code} is not a country calling code")
    # IS_POSSIBLE only: a number possible "locally only" lacks its area code, which no
    # provider can dial from abroad
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        raise ValueError(f"not a possible number for country code +{number.country_code}")
    return value


def whatsapp_number(value: str) -> str:
    """E.164, also written Twilio-style (``whatsapp:+34...``); stored plain, since every
    provider adds its own prefix."""
    return e164(value.removeprefix("whatsapp:"))


def email_address(value: str) -> str:
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address ({exc})") from None
    return value


@dataclass(frozen=True, slots=True)
class Channel:
    """One channel: what a send to it carries and what its addresses look like.

    ``check_address`` returns the address as it is stored (it may normalise it) or raises
    ``ValueError`` with a message for the client. ``address_schema`` documents ``to`` in the
    OpenAPI document. ``max_body`` bounds a text send's body in characters.
    """

    name: str
    description: str
    kind: Literal["text", "email"] = "text"
    check_address: AddressCheck = str
    address_schema: Mapping[str, object] | None = None
    max_body: int = 4096

    def __post_init__(self) -> None:
        if not _CHANNEL_NAME.fullmatch(self.name):
            raise PipecoreError(f"channel name {self.name!r} does not match {CHANNEL_NAME_PATTERN}")


# SMS concatenates up to 10 segments (Twilio's 1,600 characters); WhatsApp text takes 4,096.
WHATSAPP = Channel(
    "whatsapp",
    "WhatsApp messages to a phone number",
    check_address=whatsapp_number,
    address_schema={
        "type": "string",
        "pattern": "^(whatsapp:)?" + E164_PATTERN.removeprefix("^"),
    },
    max_body=4096,
)
SMS = Channel(
    "sms",
    "text messages to a phone number",
    check_address=e164,
    address_schema={"type": "string", "pattern": E164_PATTERN},
    max_body=1600,
)
EMAIL = Channel(
    "email", "email to one or more addresses", kind="email", check_address=email_address
)

STANDARD_CHANNELS: tuple[Channel, ...] = (WHATSAPP, EMAIL, SMS)


class ChannelSet(Mapping[str, Channel]):
    """The channels this daemon knows: the standard ones and those its providers declare."""

    def __init__(self, channels: Mapping[str, Channel], warnings: tuple[str, ...] = ()) -> None:
        self._channels = dict(channels)
        self.warnings = warnings

    def __getitem__(self, name: str) -> Channel:
        return self._channels[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._channels)

    def __len__(self) -> int:
        return len(self._channels)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._channels)

    @classmethod
    def of(cls, providers: Mapping[str, Provider]) -> ChannelSet:
        """The standard channels plus every channel the providers declare. Two declarations of
        one name must agree; a provider serving a channel that nobody declares is warned about
        (tenants cannot configure it)."""
        channels = {c.name: c for c in STANDARD_CHANNELS}
        for name in sorted(providers):
            for channel in providers[name].declared_channels:
                known = channels.get(channel.name)
                if known is not None and known != channel:
                    raise PipecoreError(
                        f"provider {name} declares channel {channel.name!r} differently from "
                        "an earlier declaration"
                    )
                channels[channel.name] = channel
        warnings = tuple(
            f"provider {name} serves {channel!r}, which no plugin declares as a channel; "
            "tenants cannot configure it"
            for name in sorted(providers)
            for channel in sorted(providers[name].channels)
            if channel not in channels
        )
        return cls(channels, warnings)
