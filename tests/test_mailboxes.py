"""One mailbox parser (email-validator's) for a send's ``from``: the API's validation, the
sender-domain check and the plugins read a value the same way, and domains compare in their
IDNA form."""

from __future__ import annotations

import pytest

from pipecored import MessageRejected, check_sender_domain, parse_mailbox


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("ana@example.com", ("", "ana@example.com"), id="address"),
        pytest.param("Ana <ana@example.com>", ("Ana", "ana@example.com"), id="name"),
        pytest.param('"Ana, M." <ana@example.com>', ("Ana, M.", "ana@example.com"), id="quoted"),
        pytest.param("Mesa Ñandú <mesa@example.com>", ("Mesa Ñandú", "mesa@example.com"), id="ñ"),
        pytest.param("Ana M. López <a@example.com>", ("Ana M. López", "a@example.com"), id="dot"),
        pytest.param("Reservas 🍽️ <r@example.com>", ("Reservas 🍽️", "r@example.com"), id="emoji"),
        pytest.param("ana@bücher.de", ("", "ana@bücher.de"), id="idn"),
    ],
)
def test_one_mailbox(value: str, expected: tuple[str, str]) -> None:
    assert parse_mailbox(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("alice@example.org)<bob@evil.com>", id="comment-close-then-angle"),
        pytest.param("alice@example.org <bob@evil.com>", id="address-as-name"),
        pytest.param("a@example.org, b@evil.com", id="list"),
        pytest.param("Ana <a@example.org> <b@evil.com>", id="two-angles"),
        pytest.param("Ana <a@example.org> trailing", id="trailing-text"),
        pytest.param("Ana <a@example.org>\r\nBcc: z@evil.com", id="crlf"),
        pytest.param("Ana\n <a@example.org>", id="folded-name"),
        pytest.param("(alice@example.org) bob@evil.com", id="comment"),
        pytest.param("not an address", id="no-address"),
    ],
)
def test_anything_but_one_mailbox_is_refused(value: str) -> None:
    assert parse_mailbox(value) is None
    with pytest.raises(MessageRejected) as rejected:
        check_sender_domain(value, "noreply@example.org")
    assert rejected.value.field == "from"


@pytest.mark.parametrize(
    ("sender", "configured"),
    [
        pytest.param("reservas@bücher.de", "noreply@xn--bcher-kva.de", id="unicode-vs-ascii"),
        pytest.param("reservas@xn--bcher-kva.de", "Tienda <noreply@bücher.de>", id="ascii-vs-uni"),
        pytest.param("Mesa <mesa@BÜCHER.de>", "noreply@bücher.de", id="case"),
        pytest.param("mesa@TableFlow.com", "noreply@tableflow.com", id="ascii-case"),
    ],
)
def test_domains_compare_in_their_idna_form(sender: str, configured: str) -> None:
    check_sender_domain(sender, configured)


@pytest.mark.parametrize(
    "sender",
    [
        pytest.param("x@bucher.de", id="lookalike"),
        pytest.param("x@mail.bücher.de", id="subdomain"),
        pytest.param("x@xn--bcher-kva.de.evil.com", id="suffix"),
    ],
)
def test_other_domains_are_refused(sender: str) -> None:
    with pytest.raises(MessageRejected):
        check_sender_domain(sender, "noreply@bücher.de")
