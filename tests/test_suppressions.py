"""Opt-out keywords as SPEC section 9 states them: whole text, case and accents ignored."""

from __future__ import annotations

import pytest

from pipecored.suppressions import DEFAULT_KEYWORDS, OptOutIntent, OptOutKeywords

STOP = OptOutIntent.STOP
START = OptOutIntent.START


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("STOP", STOP),
        ("stop", STOP),
        ("  Stop.  ", STOP),
        ("STOPALL", STOP),
        ("unsubscribe", STOP),
        ("Cancel", STOP),
        ("END", STOP),
        ("quit", STOP),
        ("baja", STOP),
        ("Bajá", STOP),
        ("¡BAJA!", STOP),
        ("parar", STOP),
        ("PÁRAR", STOP),
        ("START", START),
        ("unstop", START),
        ("Alta", START),
        ("ÁLTA", START),
        # Not the whole text: a reply for the platform, not a keyword.
        ("STOP por favor", None),
        ("no me manden más, stop", None),
        ("REPROGRAMAR", None),
        ("CANCELAR", None),
        ("stopp", None),
        ("", None),
        ("   ", None),
        ("👍", None),
    ],
)
def test_default_keywords(text: str, intent: OptOutIntent | None) -> None:
    assert DEFAULT_KEYWORDS.intent(text) is intent


def test_a_tenant_list_replaces_the_default_and_the_other_keeps_its_default() -> None:
    keywords = OptOutKeywords.of(stop=["Cancelar", "no más"])

    assert keywords.intent("CANCELAR") is STOP
    assert keywords.intent("No Mas") is STOP
    assert keywords.intent("STOP") is None  # the tenant's stop list replaced the default
    assert keywords.intent("alta") is START  # start list left out: default kept


def test_an_empty_tenant_list_turns_that_side_off() -> None:
    keywords = OptOutKeywords.of(stop=[], start=[])

    assert keywords.intent("STOP") is None
    assert keywords.intent("START") is None


def test_a_word_on_both_lists_is_a_stop() -> None:
    assert OptOutKeywords.of(stop=["basta"], start=["BASTA"]).intent("basta") is STOP
