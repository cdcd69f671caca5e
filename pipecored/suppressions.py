"""Opt-out keywords (SPEC section 9): whether an inbound sms or whatsapp text asks to stop
messages, or to start them again.

Only the whole text counts, so "stop" is an opt-out but "no me manden stop" or "STOP por favor"
is a reply the platform should read. Case, accents and the blanks and punctuation around the
word are ignored: phones capitalise, people type "Bajá" or "stop." and carriers treat those the
same way.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Final

from pipecored.mailboxes import parse_mailbox

DEFAULT_STOP_KEYWORDS: Final = (
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "BAJA",
    "PARAR",
)
DEFAULT_START_KEYWORDS: Final = ("START", "UNSTOP", "ALTA")

# Trimmed from both ends before comparing: "STOP." and "¡Baja!" are still the keyword.
_SURROUNDING: Final = " \t\r\n.,;:!¡?¿\"'()"


class OptOutIntent(Enum):
    STOP = "stop"
    START = "start"


def normalize_keyword(text: str) -> str:
    """Upper case with the accents taken off and the surrounding blanks and punctuation trimmed:
    the form keywords and texts are compared in."""
    decomposed = unicodedata.normalize("NFKD", text.strip(_SURROUNDING))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return bare.casefold().upper()


@dataclass(frozen=True, slots=True)
class OptOutKeywords:
    """A tenant's keywords (its ``optOut`` lists, or the defaults), normalized once."""

    stop: frozenset[str]
    start: frozenset[str]

    @classmethod
    def of(
        cls, stop: Iterable[str] | None = None, start: Iterable[str] | None = None
    ) -> OptOutKeywords:
        """A list the tenant leaves out keeps the default; one it sets replaces it."""
        return cls(
            stop=frozenset(
                normalize_keyword(k) for k in (DEFAULT_STOP_KEYWORDS if stop is None else stop)
            ),
            start=frozenset(
                normalize_keyword(k) for k in (DEFAULT_START_KEYWORDS if start is None else start)
            ),
        )

    def intent(self, text: str) -> OptOutIntent | None:
        """What an inbound text asks for, or None for an ordinary reply."""
        word = normalize_keyword(text)
        if not word:
            return None
        # A word on both lists is read as a stop: honouring an opt-out wrongly costs a
        # message, ignoring one breaks the law.
        if word in self.stop:
            return OptOutIntent.STOP
        if word in self.start:
            return OptOutIntent.START
        return None


DEFAULT_KEYWORDS: Final = OptOutKeywords.of()


@functools.lru_cache(maxsize=4096)
def tenant_keywords(stop: tuple[str, ...] | None, start: tuple[str, ...] | None) -> OptOutKeywords:
    """A tenant's keywords from its ``optOut`` lists, normalized once per distinct pair of
    lists rather than at every inbound message (the defaults when it sets neither)."""
    return DEFAULT_KEYWORDS if stop is None and start is None else OptOutKeywords.of(stop, start)


def address_key(kind: str, address: str) -> str:
    """How an address is kept on a suppression list and looked up (SPEC section 9): an email
    address by its mailbox alone, in lower case (``Ana <Ana@Example.com>`` is
    ``ana@example.com``), any other address as the channel stores it, a WhatsApp number
    without Twilio's ``whatsapp:`` prefix. The same key for a send, a callback and the API."""
    address = address.strip()
    if kind == "email":
        mailbox = parse_mailbox(address)
        return (mailbox[1] if mailbox else address).lower()
    return address.removeprefix("whatsapp:")
