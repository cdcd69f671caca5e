"""How a secret looks wherever it must be shown (never whole), and every form it can take in
text that reaches us from the wire, so that scrubbing finds it in any of them."""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Iterable, Iterator
from typing import cast
from urllib.parse import quote, quote_plus

import ahocorasick

MASK = "****"
_SHOWN = 4
_MIN_LENGTH_TO_SHOW = 12  # a short secret shows nothing: four characters would be too much of it

# Characters that no URL or form encoding changes: a secret made of these alone (most API keys
# and tokens) has no percent-encoded form to look for.
_URL_SAFE = re.compile(r"[A-Za-z0-9_.~-]*")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")
_URLSAFE_ALPHABET = str.maketrans("+/", "-_")
# A base64 fragment shorter than this would also match ordinary text.
_MIN_BASE64_FRAGMENT = 4


def mask(value: str) -> str:
    if len(value) < _MIN_LENGTH_TO_SHOW:
        return MASK
    return MASK + value[-_SHOWN:]


def is_masked_form_of(candidate: str, value: str) -> bool:
    """True when ``candidate`` is what :func:`mask` shows for ``value`` (pasted back from GET)."""
    return candidate.startswith(MASK) and candidate == mask(value)


def json_escapes(text: str) -> bool:
    """Whether a JSON string shows ``text`` differently: JSON escapes only quotes, backslashes
    and control characters (checked in C, for the log redaction's sake)."""
    return '"' in text or "\\" in text or not text.isprintable()


def json_forms(text: str) -> set[str]:
    """``text`` inside a JSON string, as JSON encoders write it (UTF-8 or ``\\uXXXX``, with or
    without ``\\/``), without the quotes."""
    forms = {json.dumps(text, ensure_ascii=False)[1:-1]}
    if not text.isascii():
        forms.add(json.dumps(text)[1:-1])
    if "/" in text:
        forms.update([form.replace("/", "\\/") for form in forms])
    return forms


def _url_forms(secret: str) -> set[str]:
    forms = set()
    for safe in ("", "/"):  # quote's default keeps "/", form encoding does not
        forms.add(quote(secret, safe=safe))
        forms.add(quote_plus(secret, safe=safe))
    # some encoders write the escapes' hex digits in lower case
    forms.update([_PERCENT_ESCAPE.sub(lambda m: m.group(0).lower(), form) for form in forms])
    return forms


def base64_fragments(data: bytes) -> set[str]:
    """What base64 text holds wherever ``data`` was encoded: ``data`` alone, or inside more bytes
    (the Basic-auth pair ``sid:token``). The characters of a base64 text each hold six bits and
    their alignment depends on ``data``'s offset modulo 3, so there is one fragment per offset,
    without the edge characters that share bits with the bytes around ``data``. Also in the
    URL-safe alphabet."""
    fragments = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data + b"\0\0").decode("ascii")
        first = (8 * offset + 5) // 6  # the first character with no bit of the bytes before
        last = (8 * (offset + len(data)) - 6) // 6  # the last with no bit of the bytes after
        fragment = encoded[first : last + 1]
        if len(fragment) >= _MIN_BASE64_FRAGMENT:
            fragments.add(fragment)
            fragments.add(fragment.translate(_URLSAFE_ALPHABET))
    return fragments


def wire_forms(secret: str) -> set[str]:
    """Every form ``secret`` takes in text from the wire (a provider's answer echoing a request,
    an exception's message): itself, URL-encoded (``quote`` and ``quote_plus``, hex in either
    case), JSON-escaped, and base64-encoded alone or inside a longer value such as the
    Basic-auth pair ``sid:token``."""
    forms = {secret}
    if not _URL_SAFE.fullmatch(secret):
        forms.update(_url_forms(secret))
    if json_escapes(secret) or not secret.isascii() or "/" in secret:
        forms.update(json_forms(secret))
    forms.update(base64_fragments(secret.encode("utf-8")))
    return forms


# A form of a secret, with whether its last characters may be shown (see _text_forms)
_Form = tuple[str, bool]


def _text_forms(secret: str) -> set[_Form]:
    """Every form of ``secret`` a text can hold: its wire forms, each also as a JSON string
    shows it (a provider's text in a rendered JSON log line is escaped once more).
    Only the secret itself, unescaped, may show its last characters (:func:`mask`): the end of
    an encoded form could cut an escape in two, or tell more than four characters."""
    forms = wire_forms(secret)
    forms.update(
        [escaped for form in list(forms) if json_escapes(form) for escaped in json_forms(form)]
    )
    plain = not json_escapes(secret)
    return {(form, plain and form == secret) for form in forms}


def _automaton(secrets: Iterable[str]) -> ahocorasick.Automaton | None:
    """An automaton over the last :data:`SecretScrubber.WORD` characters of every form of
    ``secrets``; each word's value is the forms that end with it, checked whole on a match.
    Shorter words keep the automaton small (base64 forms are a third longer than the secret,
    and random: they share few trie nodes) at the cost of a comparison per match."""
    words: dict[str, list[_Form]] = {}
    for secret in secrets:
        for form in _text_forms(secret):
            words.setdefault(form[0][-SecretScrubber.WORD :], []).append(form)
    if not words:
        return None
    automaton = ahocorasick.Automaton(ahocorasick.STORE_ANY)
    for word, forms in words.items():
        automaton.add_word(word, tuple(forms))
    automaton.make_automaton()
    return automaton


class SecretScrubber:
    """Masks every occurrence of any of a set of secrets in a string, in any form it takes on
    the wire (:func:`pipecored.masking.wire_forms`).

    A log line is checked against every tenant's secrets, tens of thousands of them with 10,000
    tenants. Their forms go into an Aho-Corasick automaton (pyahocorasick, in C), so a string
    costs one pass whatever their number: about 1 µs for a short field, where a Python loop over
    the string's positions cost 0.75 µs per character. Building the automaton is the slow part,
    so a new configuration does not rebuild it: :meth:`updated` keeps it and puts the few
    secrets it lacks in a second, small automaton, until they are many. Secrets shorter than
    four characters are not masked: they would also match ordinary text.

    Each form is also looked for as a JSON string shows it (``"`` and ``\\`` and control
    characters escaped), so that a rendered JSON line can be scrubbed as a whole. Only the
    secret itself shows its last four characters; any other form is replaced by the bare mask.
    """

    MIN_LENGTH = 4
    MAX_EXTRA = 64  # secrets kept in the small automaton before the large one is rebuilt
    WORD = 10  # characters of each form in the automaton (see _automaton)

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = frozenset(s for s in secrets if len(s) >= self.MIN_LENGTH)
        self._automata = tuple(a for a in [_automaton(self._secrets)] if a is not None)
        self._base = self._automata

    def updated(self, secrets: Iterable[str]) -> SecretScrubber:
        """A scrubber for ``secrets``: this one's automaton plus a small one for the secrets it
        lacks, or a new automaton when those are many. A secret that is no longer in use stays
        masked until the next rebuild, which errs on the safe side."""
        # a set difference, in C: a reload at 10,000 tenants must not walk 20,000 secrets
        extra = [s for s in frozenset(secrets) - self._secrets if len(s) >= self.MIN_LENGTH]
        if len(extra) > self.MAX_EXTRA:
            return SecretScrubber(secrets)
        scrubber = copy.copy(self)
        small = _automaton(extra)
        scrubber._automata = self._base if small is None else (*self._base, small)
        return scrubber

    def __call__(self, text: str, *, show_tail: bool = True) -> str:
        """``text`` with every secret masked; ``show_tail=False`` masks each with the bare
        mask (provider text kept in the store shows none of a secret)."""
        spans: list[tuple[int, int, bool]] = []
        for automaton in self._automata:
            # the stub types the STORE_LENGTH automaton's values; these are STORE_ANY's
            matches = cast("Iterator[tuple[int, tuple[_Form, ...]]]", automaton.iter(text))
            for end, forms in matches:
                stop = end + 1
                for form, shows_tail in forms:
                    start = stop - len(form)
                    if start >= 0 and text.startswith(form, start):
                        spans.append((start, stop, shows_tail))
        if not spans:
            return text
        # leftmost first and, at one position, the longest form wins; a form inside another
        # adds nothing, and two that overlap are masked as one (showing nothing of either)
        spans.sort(key=lambda span: (span[0], -span[1]))
        merged: list[tuple[int, int, bool]] = []
        for start, end, shows_tail in spans:
            if merged and start < merged[-1][1]:
                if end > merged[-1][1]:
                    merged[-1] = (merged[-1][0], end, False)
                continue
            merged.append((start, end, shows_tail and show_tail))
        parts: list[str] = []
        done = 0
        for start, end, shows_tail in merged:
            parts.append(text[done:start])
            parts.append(mask(text[start:end]) if shows_tail else MASK)
            done = end
        parts.append(text[done:])
        return "".join(parts)


_shared: tuple[frozenset[str], SecretScrubber] = (frozenset(), SecretScrubber(()))


def scrubber_for(secrets: frozenset[str]) -> SecretScrubber:
    """A scrubber for a configuration's secrets (``snapshot.secrets``), shared by every user of
    the same snapshot (the log redaction, alerts) and updated from the last one when the
    snapshot changes (:meth:`SecretScrubber.updated`), so that it is built once."""
    global _shared
    built_for, scrubber = _shared
    if secrets is not built_for:
        scrubber = scrubber.updated(secrets)
        _shared = (secrets, scrubber)
    return scrubber
