"""structlog set-up: JSON lines by default, console output on a TTY, secrets redacted."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import sys
import threading
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import orjson
import structlog

from pipecored.masking import SecretScrubber, mask, scrubber_for

SECRET_KEY_WORDS = ("token", "secret", "password", "apikey", "api_key", "authorization")

SecretSource = Callable[[], frozenset[str]]


class SecretRedactor:
    """Replace every known secret value wherever it appears in an event, and the value of any key
    that names a secret, at any depth. Known values come from the live configuration
    (credentials, keys)."""

    def __init__(self, source: SecretSource | None = None) -> None:
        self.source = source
        self._secret_keys: dict[str, bool] = {}

    def _current(self) -> SecretScrubber:
        return scrubber_for(self.source() if self.source else frozenset())

    def _names_secret(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        named = self._secret_keys.get(key)
        if named is None:
            lowered = key.lower()
            named = any(word in lowered for word in SECRET_KEY_WORDS)
            if len(self._secret_keys) < 4096:  # mostly the code's own names: a bounded cache
                self._secret_keys[key] = named
        return named

    def _redacted(self, value: Any, scrub: Callable[[str], str]) -> Any:
        """``value`` with ``scrub`` applied to its strings and every string under a key that
        names a secret masked, however deep (``request={"headers": {"Authorization": ...}}``).
        Containers are copied: the event's values may be the caller's own objects."""
        if isinstance(value, str):
            return scrub(value)
        if isinstance(value, dict):
            return {
                k: self._redacted(v, mask if self._names_secret(k) else scrub)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._redacted(v, scrub) for v in value]
        return value

    def mask_secret_keys(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """The values of keys that name a secret, at any depth; the rest is left to
        :meth:`scrub_line`."""
        for key, value in event.items():
            if isinstance(value, str):
                if self._names_secret(key):
                    event[key] = mask(value)
            elif isinstance(value, dict | list | tuple):
                event[key] = self._redacted(value, mask if self._names_secret(key) else _as_is)
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
            if isinstance(value, str | dict | list | tuple):
                event[key] = self._redacted(value, mask if self._names_secret(key) else scrub)
        return event


def _as_is(text: str) -> str:
    return text


class LineWriter:
    """structlog's output: one line per event, written once per event-loop turn.

    The lines a loop turn logs (its requests', its deliveries') are joined and handed to the
    file with one ``write()`` and one ``flush()``: one system call however the file buffers,
    where a file that writes through (``PYTHONUNBUFFERED``, ``python -u``, as container images
    often set) would make one per line, and structlog's ``PrintLogger`` flushes every line.
    A line logged outside a running loop (start-up, other threads) is written at once, after
    any still waiting, so the file keeps the order they were logged in; lines still waiting
    when the process exits are written by :meth:`flush` at exit.
    """

    def __init__(self, file: TextIO) -> None:
        self._file = file
        self._lock = threading.Lock()
        self._pending: list[str] = []
        # the loop whose next turn writes the pending lines (a loop stopped before that turn
        # leaves them to the next loop's, or to the exit)
        self._flush_on: asyncio.AbstractEventLoop | None = None

    def msg(self, message: str) -> None:
        with self._lock:
            self._pending.append(message)
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._write()
                return
            if self._flush_on is loop:
                return
            self._flush_on = loop
        loop.call_soon(self.flush)

    def flush(self) -> None:
        with self._lock:
            self._flush_on = None
            self._write()

    def _write(self) -> None:
        if self._pending:
            lines, self._pending = self._pending, []
            self._file.write("\n".join(lines) + "\n")
        self._file.flush()

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg


_writer: LineWriter | None = None  # the configured one, whose waiting lines the exit writes


@atexit.register
def _flush_at_exit() -> None:
    if _writer is not None:
        with contextlib.suppress(ValueError, OSError):  # stdout closed or its reader gone
            _writer.flush()


def _json_line(event: Any, default: Callable[[Any], Any] | None = None, **_: Any) -> str:
    """One event as a JSON line: orjson, or json when orjson refuses (an integer over 64 bits,
    a lone UTF-16 surrogate): a log call never fails for what it logs. A line with a lone
    surrogate is written with JSON's ``\\u`` escapes, as it has no UTF-8 form for stdout."""
    try:
        return orjson.dumps(event, default=default, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        line = json.dumps(event, default=repr, ensure_ascii=False)
        return line if _writable(line) else json.dumps(event, default=repr)


def _writable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    global _writer
    writer = _writer = LineWriter(sys.stdout)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=lambda *args: writer,
        cache_logger_on_first_use=True,
    )
    return redactor
