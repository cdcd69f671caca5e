"""structlog set-up: JSON lines by default, console output on a TTY, secrets redacted."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

import structlog

from pipecored.masking import mask

SECRET_KEY_WORDS = ("token", "secret", "password", "apikey", "api_key", "authorization")

SecretSource = Callable[[], frozenset[str]]


class SecretScrubber:
    """Masks every occurrence of any of a set of secrets in a string, in one pass.

    A log line is checked against every tenant's secrets, thousands of them: looking each one up
    in each string would cost milliseconds per line. Secrets are indexed by their first four
    characters, so a string costs one dictionary lookup per position. Shorter secrets are not
    masked: four characters would also match ordinary text.
    """

    PREFIX = 4

    def __init__(self, secrets: Iterable[str]) -> None:
        index: dict[str, list[str]] = {}
        for secret in secrets:
            if len(secret) >= self.PREFIX:
                index.setdefault(secret[: self.PREFIX], []).append(secret)
        for candidates in index.values():
            candidates.sort(key=len, reverse=True)  # the longest match wins
        self._index = index

    def __call__(self, text: str) -> str:
        index = self._index
        if not index or len(text) < self.PREFIX:
            return text
        parts: list[str] = []
        start = i = 0
        last = len(text) - self.PREFIX
        while i <= last:
            candidates = index.get(text[i : i + self.PREFIX])
            if candidates:
                for secret in candidates:
                    if text.startswith(secret, i):
                        parts.append(text[start:i])
                        parts.append(mask(secret))
                        i = start = i + len(secret)
                        break
                else:
                    i += 1
            else:
                i += 1
        if not parts:
            return text
        parts.append(text[start:])
        return "".join(parts)


class SecretRedactor:
    """Replace every known secret value wherever it appears in an event, and the value of any key
    that names a secret. Known values come from the live configuration (credentials, keys)."""

    def __init__(self, source: SecretSource | None = None) -> None:
        self.source = source
        self._scrubber = SecretScrubber(())
        self._built_for: frozenset[str] | None = None

    def _current(self) -> SecretScrubber:
        secrets = self.source() if self.source else frozenset()
        if secrets is not self._built_for:  # a new configuration snapshot: index it once
            self._scrubber = SecretScrubber(secrets)
            self._built_for = secrets
        return self._scrubber

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        scrub = self._current()
        for key, value in list(event.items()):
            lowered = key.lower()
            if any(word in lowered for word in SECRET_KEY_WORDS) and isinstance(value, str):
                event[key] = mask(value)
            else:
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


def configure_logging(
    *, level: str = "info", fmt: str = "auto", secrets: SecretSource | None = None
) -> SecretRedactor:
    redactor = SecretRedactor(secrets)
    use_console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer()
        if use_console
        else structlog.processors.JSONRenderer(ensure_ascii=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    return redactor
