"""structlog set-up: JSON lines by default, console output on a TTY, secrets redacted."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog

from pipecored.masking import mask

SECRET_KEY_WORDS = ("token", "secret", "password", "apikey", "api_key", "authorization")

SecretSource = Callable[[], frozenset[str]]


class SecretRedactor:
    """Replace every known secret value wherever it appears in an event, and the value of any key
    that names a secret. Known values come from the live configuration (credentials, keys)."""

    def __init__(self, source: SecretSource | None = None) -> None:
        self.source = source

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        secrets = self.source() if self.source else frozenset()
        for key, value in list(event.items()):
            lowered = key.lower()
            if any(word in lowered for word in SECRET_KEY_WORDS) and isinstance(value, str):
                event[key] = mask(value)
            else:
                event[key] = _scrub(value, secrets)
        return event


def _scrub(value: Any, secrets: frozenset[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret and secret in value:
                value = value.replace(secret, mask(secret))
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, secrets) for v in value]
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
        cache_logger_on_first_use=False,
    )
    return redactor
