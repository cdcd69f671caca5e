"""Loopback addresses for tests."""

from __future__ import annotations

import socket


def closed_port_url() -> str:
    """A loopback URL nothing listens on (a port just bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
