"""structlog set-up: JSON lines by default, console output on a TTY, secrets redacted."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any, TextIO

import ahocorasick
import orjson
import structlog

from pipecored.masking import MASK, mask

SECRET_KEY_WORDS = ("token", "secret", "password", "apikey", "api_key", "authorization")

SecretSource = Callable[[], frozenset[str]]


def _json_escapes(text: str) -> bool:
    """Whether a JSON string shows ``text`` differently: it escapes only quotes, backslashes and
    control characters (checked in C: a json.dumps per secret would hold up every reload at
    10,000 tenants)."""
    return '"' in text or "\\" in text or not text.isprintable()


def _with_json_forms(secrets: Iterable[str]) -> Iterator[str]:
    for secret in secrets:
        if len(secret) >= SecretScrubber.MIN_LENGTH:
            yield secret
            if _json_escapes(secret):
                yield json.dumps(secret, ensure_ascii=False)[1:-1]


def _masked(found: str) -> str:
    return MASK if _json_escapes(found) else mask(found)


class SecretScrubber:
    """Masks every occurrence of any of a set of secrets in a string.

    A log line is checked against every tenant's secrets, tens of thousands of them with 10,000
    tenants. The secrets go into an Aho-Corasick automaton (pyahocorasick, in C), so a string
    costs one pass whatever their number: about 1 µs for a short field, where a Python loop over
    the string's positions cost 0.75 µs per character. Building the automaton is the slow part
    (0.12 s for 20,000 secrets), so a new configuration does not rebuild it: :meth:`updated`
    keeps the automaton and looks for the few secrets it lacks with ``str.find``, until they are
    many. Secrets shorter than four characters are not masked: they would also match ordinary
    text.

    Each secret is also looked for in the form a JSON string gives it (``"`` and ``\\`` and
    control characters escaped), so that a rendered JSON line can be scrubbed as a whole. Such a
    match is replaced by the bare mask: keeping its end could cut an escape in two.
    """

    MIN_LENGTH = 4
    MAX_EXTRA = 64  # secrets checked one by one before the automaton is rebuilt with them

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = frozenset(secrets)
        words = frozenset(_with_json_forms(self._secrets))
        automaton: ahocorasick.Automaton | None = None
        if words:
            automaton = ahocorasick.Automaton(ahocorasick.STORE_LENGTH)
            for word in words:
                automaton.add_word(word)
            automaton.make_automaton()
        self._automaton = automaton
        self._extra: tuple[str, ...] = ()

    def updated(self, secrets: Iterable[str]) -> SecretScrubber:
        """A scrubber for ``secrets``: this one's automaton plus a short list of the secrets it
        lacks, or a new automaton when that list would be long. A secret that is no longer in
        use stays masked until the next rebuild, which errs on the safe side."""
        # a set difference, in C: a reload at 10,000 tenants must not walk 20,000 secrets
        extra = tuple(_with_json_forms(frozenset(secrets) - self._secrets))
        if len(extra) > self.MAX_EXTRA:
            return SecretScrubber(secrets)
        scrubber = copy.copy(self)
        scrubber._extra = extra
        return scrubber

    def __call__(self, text: str) -> str:
        spans: list[tuple[int, int]] = []
        automaton = self._automaton
        if automaton is not None:
            spans.extend((end + 1 - length, end + 1) for end, length in automaton.iter(text))
        for secret in self._extra:
            at = text.find(secret)
            while at >= 0:
                spans.append((at, at + len(secret)))
                at = text.find(secret, at + 1)
        if not spans:
            return text
        # leftmost first and, at one position, the longest secret wins
        spans.sort(key=lambda span: (span[0], -span[1]))
        parts: list[str] = []
        done = 0
        for start, end in spans:
            if start < done:
                continue
            parts.append(text[done:start])
            parts.append(_masked(text[start:end]))
            done = end
        parts.append(text[done:])
        return "".join(parts)


class SecretRedactor:
    """Replace every known secret value wherever it appears in an event, and the value of any key
    that names a secret. Known values come from the live configuration (credentials, keys)."""

    def __init__(self, source: SecretSource | None = None) -> None:
        self.source = source
        self._scrubber = SecretScrubber(())
        self._built_for: frozenset[str] | None = None
        self._secret_keys: dict[str, bool] = {}

    def _current(self) -> SecretScrubber:
        secrets = self.source() if self.source else frozenset()
        if secrets is not self._built_for:  # a new configuration snapshot
            self._scrubber = self._scrubber.updated(secrets)
            self._built_for = secrets
        return self._scrubber

    def _names_secret(self, key: str) -> bool:
        named = self._secret_keys.get(key)
        if named is None:
            lowered = key.lower()
            named = any(word in lowered for word in SECRET_KEY_WORDS)
            if len(self._secret_keys) < 4096:  # keys are the code's own names: a bounded set
                self._secret_keys[key] = named
        return named

    def mask_secret_keys(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """The values of keys that name a secret; the rest is left to :meth:`scrub_line`."""
        for key, value in event.items():
            if isinstance(value, str) and self._names_secret(key):
                event[key] = mask(value)
        return event

    def scrub_line(self, logger: Any, method: str, line: str) -> str:
        """Every known secret in a rendered JSON line: one pass over the line, however many
        fields it has."""
        return self._current()(line)

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        scrub = self._current()
        for key, value in event.items():
            if isinstance(value, str):
                event[key] = mask(value) if self._names_secret(key) else scrub(value)
            elif isinstance(value, dict | list | tuple):
                event[key] = _scrub(value, scrub)
        return event


def _scrub(value: Any, scrub: SecretScrubber) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub(v, scrub) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, scrub) for v in value]
    return value


class LineWriter:
    """structlog's output: one line per event, flushed once per event-loop turn.

    A flush is a ``write()`` system call; the requests and deliveries one loop turn handles
    share it instead of paying one each (structlog's ``PrintLogger`` flushes every line). A line
    logged outside a running loop (start-up, other threads) is flushed at once.
    """

    def __init__(self, file: TextIO) -> None:
        self._file = file
        self._lock = threading.Lock()
        self._flush_scheduled = False

    def msg(self, message: str) -> None:
        with self._lock:
            self._file.write(message + "\n")
            if self._flush_scheduled:
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._file.flush()
                return
            self._flush_scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        with self._lock:
            self._flush_scheduled = False
            self._file.flush()

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg


def _json_line(event: Any, default: Callable[[Any], Any] | None = None, **_: Any) -> str:
    """One event as a JSON line: orjson, or json when orjson refuses (an integer over 64 bits,
    a key that is not a string): a log call never fails for what it logs."""
    try:
        return orjson.dumps(event, default=default, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(event, default=repr, ensure_ascii=False)


def configure_logging(
    *, level: str = "info", fmt: str = "auto", secrets: SecretSource | None = None
) -> SecretRedactor:
    redactor = SecretRedactor(secrets)
    use_console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    common: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    processors: list[Any]
    if use_console:  # for people at a terminal: every value scrubbed before it is pretty-printed
        processors = [*common, redactor, structlog.dev.ConsoleRenderer()]
    else:  # JSON lines: scrubbed once, as a whole, after rendering
        processors = [
            *common,
            redactor.mask_secret_keys,
            structlog.processors.JSONRenderer(serializer=_json_line),
            redactor.scrub_line,
        ]
    writer = LineWriter(sys.stdout)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=lambda *args: writer,
        cache_logger_on_first_use=True,
    )
    return redactor
