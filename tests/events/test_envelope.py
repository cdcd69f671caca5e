"""An event's body and headers, verified as a receiver would: with ``standardwebhooks`` and
``svix``, on the bytes that went out."""

from __future__ import annotations

import base64
import json
import time

import pytest
import standardwebhooks
import svix.webhooks

from pipecored.events.envelope import event_body, signed_headers

SECRET = "whsec_" + base64.b64encode(b"tableflow-test-key-0123456789").decode()


def test_body_is_type_timestamp_data_with_text_byte_for_byte() -> None:
    body = event_body(
        "message.received", 1_780_000_000.0, {"from": "+56911", "body": "Reprogramar 👍 mañana"}
    )

    assert json.loads(body) == {
        "type": "message.received",
        "timestamp": "2026-05-28T20:26:40Z",
        "data": {"from": "+56911", "body": "Reprogramar 👍 mañana"},
    }
    assert "Reprogramar 👍 mañana".encode() in body


@pytest.mark.parametrize("secret", [SECRET, "a plain old secret ñ"])
def test_both_libraries_verify_the_signature(secret: str) -> None:
    body = event_body("message.delivered", time.time(), {"id": "msg_1", "status": "delivered"})
    headers = signed_headers("evt_01", body, secret)
    receiver_secret = (
        secret
        if secret.startswith("whsec_")
        else "whsec_" + base64.b64encode(secret.encode()).decode()
    )

    assert headers["webhook-id"] == "evt_01"
    assert headers["content-type"] == "application/json"
    assert standardwebhooks.Webhook(receiver_secret).verify(body.decode(), headers) == json.loads(
        body
    )
    # svix raises on a bad signature (its stubs type the return as None).
    svix.webhooks.Webhook(receiver_secret).verify(body.decode(), headers)


def test_a_retry_signs_again_with_its_own_time_under_the_same_id() -> None:
    body = event_body("message.sent", 1_780_000_000.0, {"id": "msg_1"})
    first = signed_headers("evt_02", body, SECRET, now=time.time() - 60)
    retry = signed_headers("evt_02", body, SECRET)

    assert first["webhook-id"] == retry["webhook-id"] == "evt_02"
    assert first["webhook-timestamp"] != retry["webhook-timestamp"]
    assert first["webhook-signature"] != retry["webhook-signature"]
    assert standardwebhooks.Webhook(SECRET).verify(body.decode(), retry)


def test_a_tampered_body_or_another_secret_fails_verification() -> None:
    body = event_body("message.failed", time.time(), {"id": "msg_1"})
    headers = signed_headers("evt_03", body, SECRET)

    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET).verify(body.decode().replace("failed", "sent"), headers)
    other = "whsec_" + base64.b64encode(b"another key entirely").decode()
    with pytest.raises(svix.webhooks.WebhookVerificationError):
        svix.webhooks.Webhook(other).verify(body.decode(), headers)


def test_an_unusable_secret_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError) as refused:
        signed_headers("evt_04", b"{}", "whsec_not*base64*at-all")
    assert "not*base64" not in str(refused.value)
