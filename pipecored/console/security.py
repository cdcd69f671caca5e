"""What every console response carries, and what every console POST must show.

Responses: a Content-Security-Policy that allows only the daemon's own scripts, styles and
images (no inline script or style, no other origin, no framing, forms posting only here), the
older headers that say the same to older browsers, and ``no-store``: pages hold a tenant's data.

POSTs: the session's CSRF token in the form, and an ``Origin`` (or, without one, a ``Referer``)
that is this console's own: the request's scheme and host, or ``server.publicUrl``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS: Final = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
)
NO_STORE: Final = (b"cache-control", b"no-store")
HSTS: Final = (b"strict-transport-security", b"max-age=31536000")


def over_tls(request: Request, public_url: str | None) -> bool:
    """Whether the browser reached us over TLS: directly, through a proxy whose
    X-Forwarded-Proto uvicorn trusts, or as the operator's public URL says."""
    return request.url.scheme == "https" or bool(public_url and public_url.startswith("https:"))


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(request: Request, public_url: str | None) -> bool:
    """The POST came from a page of this console (a cross-site form carries its own origin)."""
    claimed = request.headers.get("origin")
    if claimed is None or claimed == "null":
        referer = request.headers.get("referer")
        claimed = _origin_of(referer) if referer else None
    if not claimed:
        return False
    allowed = {f"{request.url.scheme}://{request.url.netloc}".lower()}
    if public_url:
        public = _origin_of(public_url)
        if public:
            allowed.add(public)
    return claimed.lower() in allowed


class SecurityHeaders:
    """Adds :data:`HEADERS` to every response of the console (static files too)."""

    def __init__(self, app: ASGIApp, *, tls: Callable[[], bool], static_prefix: str) -> None:
        self.app = app
        self.tls = tls  # whether server.publicUrl is https (read per request: it reloads)
        self.static_prefix = static_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(self.static_prefix)
        secure = scope.get("scheme") == "https" or self.tls()

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(HEADERS)
                if not static:
                    headers.append(NO_STORE)
                if secure:
                    headers.append(HSTS)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
