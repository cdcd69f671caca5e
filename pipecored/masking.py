"""How a secret looks wherever it must be shown: never whole."""

from __future__ import annotations

MASK = "****"
_SHOWN = 4
_MIN_LENGTH_TO_SHOW = 12  # a short secret shows nothing: four characters would be too much of it


def mask(value: str) -> str:
    if len(value) < _MIN_LENGTH_TO_SHOW:
        return MASK
    return MASK + value[-_SHOWN:]


def is_masked_form_of(candidate: str, value: str) -> bool:
    """True when ``candidate`` is what :func:`mask` shows for ``value`` (pasted back from GET)."""
    return candidate.startswith(MASK) and candidate == mask(value)
