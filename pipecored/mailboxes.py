"""Email senders: a send's ``from`` may only name a mailbox in the tenant's own domain.

One parser decides what a ``from`` is, for the API's validation, the sender-domain check and the
plugins alike: email-validator's (``allow_display_name``), so that no two readings of one value
disagree (``alice@example.org)<bob@evil.com>`` must not pass one check as alice@ and reach the
provider as bob@). Domains are compared in their ASCII (IDNA) form: ``bücher.de`` and
``xn--bcher-kva.de`` are one domain.
"""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, ValidatedEmail, validate_email

from pipecored.errors import MessageRejected

# A display name written without quotes (``Mesa Ñandú <mesa@example.com>``). RFC 5322 wants
# quotes around a name with dots or non-ASCII letters, and email-validator refuses it without;
# a name free of every character that can change how the value parses (quotes, brackets, "@",
# commas, colons, comments, backslashes) reads the same quoted, so it is quoted and read again.
_UNQUOTED_NAME = re.compile(
    r'(?P<name>[^"<>@,;:()\[\]\\]*[^\s"<>@,;:()\[\]\\])\s*<(?P<address>[^<>]*)>'
)


def _validated(value: str) -> ValidatedEmail | None:
    if "\r" in value or "\n" in value:  # header injection; email-validator unfolds CRLF
        return None
    try:
        return validate_email(value, allow_display_name=True, check_deliverability=False)
    except EmailNotValidError:
        pass
    unquoted = _UNQUOTED_NAME.fullmatch(value)
    if unquoted is None:
        return None
    quoted = f'"{unquoted.group("name").strip()}" <{unquoted.group("address")}>'
    try:
        return validate_email(quoted, allow_display_name=True, check_deliverability=False)
    except EmailNotValidError:
        return None


def parse_mailbox(value: str) -> tuple[str, str] | None:
    """``(display name, address)`` when ``value`` is exactly one mailbox, else ``None``.

    Accepts ``addr@example.com``, ``Name <addr@example.com>`` and ``"Name" <addr@example.com>``;
    the address is returned as written. A list of addresses, a display name that is itself an
    address (``evil@x.com <a@y.com>``), anything after the address, or CR/LF is refused, so a
    domain check on the result cannot be slipped past.
    """
    validated = _validated(value)
    if validated is None:
        return None
    return (validated.display_name or "").strip(), validated.original


def domain_of(value: str) -> str | None:
    """The ASCII (IDNA) form of a mailbox's domain, lower case; None if it is not a mailbox."""
    validated = _validated(value)
    return validated.ascii_domain.lower() if validated is not None else None


def check_sender_domain(sender: str | None, from_email: str | None) -> None:
    """Refuse (``MessageRejected("from", ...)``) a ``from`` outside ``from_email``'s domain."""
    if sender is None:
        return
    domain = domain_of(from_email or "")
    if domain is None:
        raise MessageRejected("from", "the tenant has no valid fromEmail to check it against")
    if domain_of(sender) != domain:
        raise MessageRejected("from", f"must be an address at {domain}")
