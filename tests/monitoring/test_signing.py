"""pipecored.signing: Standard Webhooks headers, checked against the specification's published
test vector and verified by the standardwebhooks and Svix libraries."""

from __future__ import annotations

import base64
import time

import pytest
import standardwebhooks
import svix.webhooks

from pipecored.signing import webhook_headers, webhook_signing_key

# https://github.com/standard-webhooks/standard-webhooks: the specification's example.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_specification_test_vector() -> None:
    key = webhook_signing_key(VECTOR_SECRET)
    headers = webhook_headers(VECTOR_ID, VECTOR_BODY, key=key, timestamp=VECTOR_TIMESTAMP)
    assert headers == {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }


@pytest.mark.parametrize(
    ("secret", "library_key"),
    [
        pytest.param(VECTOR_SECRET, VECTOR_SECRET, id="whsec"),
        # Generators often drop base64 padding; the libraries accept it too.
        pytest.param(
            "whsec_" + base64.b64encode(b"k" * 32).decode().rstrip("="), None, id="unpadded"
        ),
        pytest.param("plain s3cr3t ñ", "plain s3cr3t ñ".encode(), id="plain-as-bytes"),
    ],
)
def test_the_libraries_verify_what_is_signed_now(
    secret: str, library_key: str | bytes | None
) -> None:
    body = '{"tenant":"café","reason":"caído 🚨"}'.encode()
    headers = webhook_headers("alert_1", body, key=webhook_signing_key(secret))
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
    key = secret if library_key is None else library_key
    standardwebhooks.Webhook(key).verify(body, headers, json_parse=False)
    svix.webhooks.Webhook(key).verify(body, headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(key).verify(body + b" ", headers, json_parse=False)


def test_the_timestamp_header_is_the_signed_one() -> None:
    """A fractional time just under a second is not rounded up in one place and not the other."""
    key = webhook_signing_key(VECTOR_SECRET)
    almost = VECTOR_TIMESTAMP + 0.9999996
    headers = webhook_headers(VECTOR_ID, VECTOR_BODY, key=key, timestamp=almost)
    assert headers["webhook-timestamp"] == str(VECTOR_TIMESTAMP)
    assert headers["webhook-signature"] == VECTOR_SIGNATURE


def test_without_a_key_only_the_id_and_timestamp_are_set() -> None:
    headers = webhook_headers("alert_1", b"{}", key=None, timestamp=VECTOR_TIMESTAMP)
    assert headers == {"webhook-id": "alert_1", "webhook-timestamp": str(VECTOR_TIMESTAMP)}


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        pytest.param("whsec_not*base64*s3cr3t", "must be base64", id="not-base64"),
        pytest.param("whsec_", "empty", id="whsec-empty"),
        pytest.param("", "empty", id="empty"),
    ],
)
def test_unusable_secrets_are_refused_without_echoing_them(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        webhook_signing_key(secret)
    assert "s3cr3t" not in str(caught.value)
