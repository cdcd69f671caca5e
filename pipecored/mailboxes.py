"""Email senders: a send's ``from`` may only name a mailbox in the tenant's own domain."""

from __future__ import annotations

from email.utils import getaddresses

from pipecored.errors import MessageRejected


def parse_mailbox(value: str) -> tuple[str, str] | None:
    """``(display name, address)`` when ``value`` is exactly one mailbox, else ``None``.

    Accepts ``addr@example.com`` and ``Name <addr@example.com>``. A list of addresses, or a
    display name that is itself an address (``evil@x.com <a@y.com>``), parses as several mailboxes
    and is refused, so a domain check on the result cannot be slipped past.
    """
    if "\r" in value or "\n" in value:
        return None
    mailboxes = getaddresses([value])
    if len(mailboxes) != 1:
        return None
    name, address = mailboxes[0]
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address):
        return None
    return name, address


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].rstrip(".").casefold()


def check_sender_domain(sender: str | None, from_email: str | None) -> None:
    """Refuse (``MessageRejected("from", ...)``) a ``from`` outside ``from_email``'s domain."""
    if sender is None:
        return
    configured = parse_mailbox(from_email or "")
    if configured is None:
        raise MessageRejected("from", "the tenant has no valid fromEmail to check it against")
    domain = domain_of(configured[1])
    mailbox = parse_mailbox(sender)
    if mailbox is None or domain_of(mailbox[1]) != domain:
        raise MessageRejected("from", f"must be an address at {domain}")
