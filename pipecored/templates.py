"""A tenant's template catalogue: a logical template (``order_confirmation``) in each language,
mapped to each provider's own template, with a ``text`` rendering for providers without one.

```yaml
templates:
  order_confirmation:
    es:
      meta: {name: order_confirmation, language: es}
      twilio: {contentSid: HXb5b62575e6e4ff6129ad7c8efe1f983e}
      text: "Hola {{1}}, tu pedido está confirmado para las {{2}}."
```

A send names the logical template; failover sends the same template through the fallback's own
mapping. Everything here is pure: the service checks a send against the catalogue at accept
time (:func:`resolve`), delivery asks what a route's provider gets (:func:`for_provider`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipecored.provider import TemplateRef

TEXT = "text"  # the key of the plain-text rendering in a language's mapping
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


class TemplateProblem(ValueError):
    """A send's template cannot be sent: the message names the problem; ``field`` the part of
    the send body it is about."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def placeholders(text: str) -> list[str]:
    """The variables a text uses, in order of first use (``{{1}}``, ``{{name}}``)."""
    seen: dict[str, None] = {}
    for match in _PLACEHOLDER.finditer(text):
        seen.setdefault(match.group(1))
    return list(seen)


def render(text: str, variables: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: variables[m.group(1)], text)


@dataclass(frozen=True, slots=True)
class Resolved:
    ref: TemplateRef
    mappings: Mapping[str, Mapping[str, Any]]  # provider name -> its own template
    text: str | None  # rendered with the variables


def resolve(
    catalogue: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    name: str,
    language: str | None,
    variables: Mapping[str, str],
    providers: Iterable[str],
) -> Resolved:
    """The template a send names, checked: it exists, in the language asked for (else the
    catalogue's first), every variable its text and mappings use is given, and every provider
    of the channel's routes can send it (its own mapping, or the text)."""
    languages = catalogue.get(name)
    if languages is None:
        known = ", ".join(sorted(catalogue)) or "none"
        raise TemplateProblem(
            "template.name", f"unknown template {name!r} (this tenant has: {known})"
        )
    if language is None:
        language = next(iter(languages))
    mapping = languages.get(language)
    if mapping is None:
        raise TemplateProblem(
            "template.language",
            f"template {name!r} has no {language!r} version (it has: {', '.join(languages)})",
        )
    text = mapping.get(TEXT)
    needed = placeholders(text) if isinstance(text, str) else []
    for provider_mapping in mapping.values():
        if isinstance(provider_mapping, Mapping):
            needed += [v for v in provider_mapping.get("variables", ()) if v not in needed]
    missing = [v for v in needed if v not in variables]
    if missing:
        raise TemplateProblem(
            "template.variables", f"template {name!r} needs variable(s) {', '.join(missing)}"
        )
    mappings = {k: v for k, v in mapping.items() if k != TEXT and isinstance(v, Mapping)}
    for provider in providers:
        if provider not in mappings and not isinstance(text, str):
            raise TemplateProblem(
                "template.name",
                f"template {name!r} ({language}) has no mapping for provider {provider} and no"
                " text to send instead",
            )
    rendered = render(text, variables) if isinstance(text, str) else None
    return Resolved(TemplateRef(name, language, dict(variables)), mappings, rendered)


def for_provider(
    catalogue: Mapping[str, Mapping[str, Mapping[str, Any]]], ref: TemplateRef, provider: str
) -> Mapping[str, Any] | None:
    """What ``provider`` gets as ``SendContext.template`` for a message using ``ref``: its own
    mapping, or None (it sends the text). A template edited since the message was accepted is
    read as it is now."""
    mapping = catalogue.get(ref.name, {}).get(ref.language, {}).get(provider)
    return mapping if isinstance(mapping, Mapping) else None
