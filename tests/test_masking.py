"""Every form a secret takes on the wire is masked where the host scrubs provider text
(``scrub_secrets``) and log lines (``SecretScrubber``), whatever characters the secret holds."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from urllib.parse import quote, quote_plus

import pytest

from pipecored.masking import SecretScrubber, scrubber_for, wire_forms
from pipecored.provider_calls import scrub_secrets

ACCOUNT = "AC0123456789abcdef0123456789abcdef"
# every character a URL, a form body, JSON or base64 writes differently, and a space
TRICKY = 'p/a+s"s\\w&o=r%d ñ 1234'
PLAIN = "tok_live_0123456789abcdef"


def encodings(secret: str) -> dict[str, str]:
    """How a provider's answer may echo ``secret`` (and the Basic-auth pair holding it)."""
    pair = f"{ACCOUNT}:{secret}".encode()
    return {
        "literal": secret,
        "quote": quote(secret, safe=""),
        "quote-default-safe": quote(secret),
        "quote-lower-hex": quote(secret, safe="").lower(),
        "quote_plus": quote_plus(secret),
        "json": json.dumps(secret)[1:-1],
        "json-utf8": json.dumps(secret, ensure_ascii=False)[1:-1],
        "json-escaped-slash": json.dumps(secret)[1:-1].replace("/", "\\/"),
        "basic-auth-pair": "Basic " + base64.b64encode(pair).decode(),
        "basic-auth-pair-urlsafe": base64.urlsafe_b64encode(pair).decode().rstrip("="),
        "base64-alone": base64.b64encode(secret.encode()).decode(),
        "base64-inside-more": base64.b64encode(b"x" + secret.encode() + b"yz").decode(),
    }


def leaked(secret: str, text: str) -> list[str]:
    """The encodings of ``secret`` still readable in ``text``: each one's core, without the
    edge characters that also carry bits of what surrounds it."""
    found = []
    for name, encoded in encodings(secret).items():
        core = encoded.removeprefix("Basic ")
        if name.startswith("basic-auth-pair"):
            # what encodes the secret in the pair; the account SID part is not secret
            core = core[len(ACCOUNT) * 4 // 3 + 2 : -3]
        elif name.startswith("base64"):
            core = core[2:-3]
        if core and core in text:
            found.append(name)
    return found


Scrub = Callable[[str, list[str]], str]


def _scrub_secrets(text: str, secrets: list[str]) -> str:
    return scrub_secrets(text, secrets, limit=10_000)


def _scrub_secrets_of_a_snapshot(text: str, secrets: list[str]) -> str:
    return scrub_secrets(text, frozenset(secrets), limit=10_000)


def _log_scrubber(text: str, secrets: list[str]) -> str:
    return SecretScrubber(secrets)(text)


def _log_scrubber_updated(text: str, secrets: list[str]) -> str:
    # the secrets a reload adds go to the small automaton of SecretScrubber.updated
    return SecretScrubber(["some-other-secret-0000"]).updated(secrets)(text)


SCRUBBERS = [
    pytest.param(_scrub_secrets, id="scrub_secrets"),
    pytest.param(_scrub_secrets_of_a_snapshot, id="scrub_secrets-snapshot"),
    pytest.param(_log_scrubber, id="log-scrubber"),
    pytest.param(_log_scrubber_updated, id="log-scrubber-updated"),
]


@pytest.mark.parametrize("scrub", SCRUBBERS)
@pytest.mark.parametrize("secret", [TRICKY, PLAIN, "s3cr3t with spaces"])
@pytest.mark.parametrize("form", list(encodings(PLAIN)))
def test_every_wire_form_of_a_secret_is_masked(scrub: Scrub, secret: str, form: str) -> None:
    encoded = encodings(secret)[form]
    text = f"401 Unauthorized: credentials {encoded} refused (account {ACCOUNT})"
    assert leaked(secret, text)  # the check can see the leak it looks for

    scrubbed = scrub(text, [secret])

    assert leaked(secret, scrubbed) == []
    assert "****" in scrubbed
    assert scrubbed.startswith("401 Unauthorized: credentials ")
    assert scrubbed.endswith(f" refused (account {ACCOUNT})")  # the SID is not a secret


@pytest.mark.parametrize("scrub", SCRUBBERS)
def test_a_whole_echoed_request_is_scrubbed(scrub: Scrub) -> None:
    secret = TRICKY
    pair = base64.b64encode(f"{ACCOUNT}:{secret}".encode()).decode()
    echoed = json.dumps(
        {
            "message": "Authenticate",
            "request": {
                "headers": {"Authorization": f"Basic {pair}"},
                "url": f"https://api.example/send?token={quote_plus(secret)}",
                "body": f"Token={quote(secret, safe='')}&To=%2B34600111222",
            },
            "detail": f"token {secret!r} is not valid",
        }
    )
    scrubbed = scrub(echoed, [secret])
    assert leaked(secret, scrubbed) == []
    assert "%2B34600111222" in scrubbed  # what is not a secret is kept


def test_the_log_scrubber_shows_the_end_of_a_plain_secret_only() -> None:
    scrub = SecretScrubber([PLAIN])
    b64 = base64.b64encode(PLAIN.encode()).decode()
    assert scrub(f"a {PLAIN} b") == "a ****cdef b"
    assert scrub(f"a {b64} b").startswith("a ****")
    assert "cdef" not in scrub(f"a {b64} b")  # an encoded form shows nothing of its own
    # provider text keeps nothing of a secret at all
    assert scrub_secrets(f"a {PLAIN} b", [PLAIN]) == "a **** b"


def test_forms_that_overlap_are_masked_as_one() -> None:
    # the end of one secret is the start of another: no character of either survives
    scrubbed = SecretScrubber(["abcdefgh-1234", "1234-ijklmnop"])("x abcdefgh-1234-ijklmnop y")
    assert scrubbed == "x **** y"


def test_short_values_and_ordinary_text_are_left_alone() -> None:
    assert scrub_secrets("the sid AC1 and the key abc", ["AC1", "abc"]) == (
        "the sid AC1 and the key abc"
    )
    text = "delivered to +34600111222 via twilio in 120 ms"
    assert SecretScrubber([PLAIN, TRICKY])(text) == text


def test_wire_forms_of_a_url_safe_secret_are_few() -> None:
    # most API keys need no URL or JSON form: the automaton holds the secret and its base64
    forms = wire_forms(PLAIN)
    assert PLAIN in forms
    assert not any("%" in form or "\\" in form for form in forms)


def test_one_scrubber_per_configuration_snapshot() -> None:
    secrets = frozenset({PLAIN, TRICKY})
    assert scrubber_for(secrets) is scrubber_for(secrets)
    assert scrubber_for(frozenset({PLAIN})) is not scrubber_for(secrets)
