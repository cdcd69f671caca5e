"""A NUL character (U+0000) where text enters pipecored: what a provider tells us is kept with
each NUL as U+FFFD (PostgreSQL ``text`` cannot hold one), and each lone UTF-16 surrogate too
(no store can write one); what a client sends is refused naming the field. Through a real
daemon on both stores: tests/e2e/test_nul_text.py."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from pipecored.channels import STANDARD_CHANNELS
from pipecored.errors import ProviderError, ValidationFailed
from pipecored.policy import classify
from pipecored.provider import (
    InboundMedia,
    InboundMessage,
    RecipientOptOut,
    SendResult,
    StatusEvent,
    storable_text,
)
from pipecored.send_body import parse_send

SMS = next(c for c in STANDARD_CHANNELS if c.name == "sms")
EMAIL = next(c for c in STANDARD_CHANNELS if c.name == "email")


def test_storable_text_replaces_each_nul_and_lone_surrogate_and_nothing_else() -> None:
    assert storable_text("a\x00b\x00") == "a\ufffdb\ufffd"
    # what json.loads makes of "\ud800" and "\udfff" escapes: no UTF-8 form, no store writes it
    assert storable_text("x\ud800y\udfff") == "x\ufffdy\ufffd"
    assert storable_text(json.loads('"\\ud83c\\udf77 \\ud83c"')) == "🍷 \ufffd"  # a pair is whole
    assert storable_text("¿sí? 🍷\r\n\t\x01\ufffd\ue000") == "¿sí? 🍷\r\n\t\x01\ufffd\ue000"
    for text in ("a\x00b", "x\ud800y"):
        storable_text(text).encode("utf-8")  # strict: it has a UTF-8 form


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        pytest.param(SendResult("hj\x001"), SendResult("hj\ufffd1"), id="send-result"),
        pytest.param(SendResult("hj\ud8001"), SendResult("hj\ufffd1"), id="send-result-surrogate"),
        pytest.param(
            StatusEvent("failed", "p\x00", "m\x00", "c\x00", "e\x00"),
            StatusEvent("failed", "p\ufffd", "m\ufffd", "c\ufffd", "e\ufffd"),
            id="status-event",
        ),
        pytest.param(
            RecipientOptOut("a\x00@x.test", "bounce", "p\x00", "550\x00"),
            RecipientOptOut("a\ufffd@x.test", "bounce", "p\ufffd", "550\ufffd"),
            id="opt-out",
        ),
        pytest.param(
            InboundMessage(
                "+34600\x00",
                "+34611\x00",
                "hola\x00",
                "in\x00",
                "s\x00",
                datetime(2026, 11, 29, tzinfo=UTC),
                (InboundMedia("image", "image/png\x00", "id\x00", "u\x00", "c\x00", "f\x00"),),
            ),
            InboundMessage(
                "+34600\ufffd",
                "+34611\ufffd",
                "hola\ufffd",
                "in\ufffd",
                "s\ufffd",
                datetime(2026, 11, 29, tzinfo=UTC),
                (
                    InboundMedia(
                        "image", "image/png\ufffd", "id\ufffd", "u\ufffd", "c\ufffd", "f\ufffd"
                    ),
                ),
            ),
            id="inbound",
        ),
    ],
)
def test_what_a_plugin_hands_the_host_is_storable_text(built: Any, expected: Any) -> None:
    assert built == expected
    # a copy with a field changed is made storable too
    assert dataclasses.replace(built, provider_message_id="x\x00").provider_message_id == "x\ufffd"


@pytest.mark.parametrize("bad", ["\x00", "\ud800"], ids=["nul", "lone-surrogate"])
def test_a_provider_errors_code_and_message_are_classified_storable(bad: str) -> None:
    failure = classify(
        ProviderError(f"number{bad}blocked", retryable=False, code=f"21{bad}211", http_status=400)
    )
    assert (failure.outcome, failure.code, failure.message) == (
        "permanent_error",
        "21\ufffd211",
        "number\ufffdblocked",
    )


@pytest.mark.parametrize(
    ("channel", "data", "message"),
    [
        pytest.param(
            SMS,
            {"to": "+34600111222", "body": "a\x00"},
            "body: may not contain a NUL character (U+0000)",
            id="body",
        ),
        pytest.param(
            SMS,
            {"to": "+34600111222", "media": [{"url": "https://x.test/a", "caption": "a\x00"}]},
            "media.0.caption: may not contain a NUL character (U+0000)",
            id="nested",
        ),
        pytest.param(
            EMAIL,
            {"to": "ana@example.com", "subject": "s", "htmlContent": "h", "tags": {"k\x00": "v"}},
            "tags: a name may not contain a NUL character (U+0000)",
            id="name",
        ),
    ],
)
def test_a_send_with_a_nul_is_refused_naming_the_field(
    channel: Any, data: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_send(channel, data, message_id="msg_1", tenant_id="acme", now=0.0)
    assert str(refused.value).startswith(message)
