"""Twilio's ``X-Twilio-Signature``, checked with the tenant's auth token.

https://www.twilio.com/docs/usage/webhooks/webhooks-security: the signature is
base64(HMAC-SHA1(authToken, url + name + value for each POST parameter, sorted by name)). A JSON
body is signed differently: the URL carries ``bodySHA256`` (hex SHA-256 of the raw body) and the
HMAC covers the URL alone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs, urlsplit, urlunsplit

from pipecored import WebhookSignatureError

_DEFAULT_PORTS = {"https": 443, "http": 80}


def _url_variants(url: str) -> list[str]:
    """The URL as given, without its default port and with it.

    Twilio is not consistent about including :443 (or :80) in the URL it signs; its own
    validator accepts either form, and so do we.
    """
    parts = urlsplit(url)
    variants = [url]
    default = _DEFAULT_PORTS.get(parts.scheme)
    if default is None or parts.hostname is None:
        return variants
    host = parts.netloc.rsplit("@", 1)[-1]
    userinfo = parts.netloc[: len(parts.netloc) - len(host)]
    try:
        port = parts.port
    except ValueError:
        return variants
    bare = host.rsplit(":", 1)[0] if port is not None else host
    if port is None:
        variants.append(urlunsplit(parts._replace(netloc=f"{userinfo}{bare}:{default}")))
    elif port == default:
        variants.append(urlunsplit(parts._replace(netloc=f"{userinfo}{bare}")))
    return variants


def _signature(auth_token: str, url: str, params: Mapping[str, Sequence[str]]) -> bytes:
    data = url
    # Twilio's reference validator takes each distinct value of a repeated parameter, sorted.
    for name in sorted(params):
        for value in sorted(set(params[name])):
            data += name + value
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest)


def verify(
    *,
    url: str,
    signature: str | None,
    auth_token: str,
    params: Mapping[str, Sequence[str]],
) -> None:
    """Raise ``WebhookSignatureError`` unless ``signature`` signs ``url`` and ``params``."""
    if not signature:
        raise WebhookSignatureError("missing X-Twilio-Signature header")
    if not auth_token:
        raise WebhookSignatureError("no authToken configured to check X-Twilio-Signature")
    given = signature.strip().encode("utf-8")
    matched = False
    for candidate in _url_variants(url):
        # Every variant is computed and compared, so timing does not reveal which one matched.
        matched |= hmac.compare_digest(_signature(auth_token, candidate, params), given)
    if not matched:
        raise WebhookSignatureError("X-Twilio-Signature does not verify")


def body_sha256(url: str) -> str | None:
    """The ``bodySHA256`` query parameter Twilio adds to the URL of a JSON-body webhook."""
    values = parse_qs(urlsplit(url).query, keep_blank_values=True).get("bodySHA256")
    return values[0] if values else None


def verify_json_body(
    *, url: str, signature: str | None, auth_token: str, body: bytes, expected_sha256: str
) -> None:
    """Raise ``WebhookSignatureError`` unless the URL is signed and the body hashes to it."""
    verify(url=url, signature=signature, auth_token=auth_token, params={})
    actual = hashlib.sha256(body).hexdigest().encode("ascii")
    if not hmac.compare_digest(actual, expected_sha256.strip().lower().encode("utf-8")):
        raise WebhookSignatureError("body does not match the signed bodySHA256")
