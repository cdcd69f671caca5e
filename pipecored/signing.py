"""Standard Webhooks signatures for what pipecored posts to other people's endpoints.

https://www.standardwebhooks.com: every request carries ``webhook-id`` (the message's identity,
the same on every retry, so that the receiver can drop duplicates), ``webhook-timestamp`` (epoch
seconds of this attempt, so that the receiver can refuse an old one) and ``webhook-signature:
v1,<base64 HMAC-SHA256 of "id.timestamp.body">``. Signing the id and the time with the body is
what makes a captured request useless to replay: the receiver checks the timestamp against its
clock (the libraries allow five minutes) and remembers the ids it has seen within that window.
Receivers verify with the ``standardwebhooks`` or ``svix`` libraries, or the same three lines of
HMAC in any language.

Alert webhooks sign this way; tenant event webhooks will too.
"""

from __future__ import annotations

import base64
import binascii
import time
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 (a format marker, not a secret)

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


def webhook_signing_key(secret: str) -> bytes:
    """The HMAC key a configured secret stands for.

    ``whsec_<base64>`` is the specification's form, decoded as it says (what a receiver's library
    is given as is). Any other string is its own key, as UTF-8 bytes: secrets configured before
    pipecored signed this way keep working, and a receiver passes those bytes to its library
    (``Webhook(secret.encode())``), or gives it ``"whsec_" + base64(secret)``.

    Raises ``ValueError`` for an empty key or a ``whsec_`` value that is not base64; the message
    never contains the secret.
    """
    if secret.startswith(SECRET_PREFIX):
        encoded = secret.removeprefix(SECRET_PREFIX)
        try:
            # Generators often leave the padding out; the specification's libraries accept that.
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"a secret starting with {SECRET_PREFIX} must be base64") from None
    else:
        key = secret.encode("utf-8")
    if not key:
        raise ValueError("the signing secret is empty")
    return key


def webhook_headers(
    message_id: str, body: bytes, *, key: bytes | None, timestamp: float | None = None
) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt at posting ``body`` (UTF-8 JSON): the id
    and timestamp always (a receiver drops duplicates by the id), the signature with a ``key``.

    ``message_id`` must stay the same across retries of one message; ``timestamp`` defaults to
    now, and should be now: a retry signs again with its own time.
    """
    # Whole seconds first: the header and the signed string must carry the same number.
    seconds = int(time.time() if timestamp is None else timestamp)
    headers = {ID_HEADER: message_id, TIMESTAMP_HEADER: str(seconds)}
    if key is not None:
        headers[SIGNATURE_HEADER] = Webhook(key).sign(
            message_id, datetime.fromtimestamp(seconds, UTC), body.decode("utf-8")
        )
    return headers
