"""The web console at ``/console`` (SPEC section 11): server-rendered pages (Jinja2) over the
same service calls as the HTTP API, with a little JavaScript and nothing fetched from anywhere
but the daemon itself.

:func:`create_console` builds it as an ASGI app of its own (its routes, HTML error pages,
security headers, session store), which ``pipecored.api.app`` mounts.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pipecored.console import views
from pipecored.console.security import SecurityHeaders
from pipecored.console.sessions import Sessions
from pipecored.errors import ApiError
from pipecored.gateway import Gateway
from pipecored.overview import Overview

HERE = Path(__file__).parent
PREFIX = views.PREFIX

ROUTES = [
    Route("/", views.tenants, methods=["GET"]),
    Route("/login", views.login_form, methods=["GET"]),
    Route("/login", views.login, methods=["POST"]),
    Route("/logout", views.logout, methods=["POST"]),
    Route("/tenants/{tenant_id}", views.tenant, methods=["GET"]),
    Route("/tenants/{tenant_id}/log", views.message_log, methods=["GET"]),
    Route("/tenants/{tenant_id}/messages/{message_id}", views.message, methods=["GET"]),
    Route("/tenants/{tenant_id}/provider", views.provider_form, methods=["GET"]),
    Route("/tenants/{tenant_id}/provider", views.switch_provider, methods=["POST"]),
    Route("/tenants/{tenant_id}/suppressions", views.suppressions, methods=["GET"]),
    Route("/tenants/{tenant_id}/webhooks", views.webhooks, methods=["GET"]),
    Route("/tenants/{tenant_id}/experiments", views.experiments, methods=["GET"]),
    Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
]


def templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(views.FILTERS)
    return env


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    error = ApiError(str(exc.detail), code=codes.get(exc.status_code, "http_error"))
    error.status = exc.status_code
    return views.error_page(request, error)


def create_console(gateway: Gateway) -> Starlette:
    app = Starlette(routes=ROUTES, exception_handlers={HTTPException: _http_error})
    app.router.redirect_slashes = False
    app.state.console = views.Console(
        gateway=gateway, overview=Overview(gateway), sessions=Sessions(), templates=templates()
    )

    def public_tls() -> bool:
        return (gateway.registry.snapshot.daemon.server.public_url or "").startswith("https:")

    app.add_middleware(SecurityHeaders, tls=public_tls, static_prefix=f"{PREFIX}/static/")
    return app


async def console_root(request: Request) -> Response:
    """``/console`` without its slash."""
    return RedirectResponse(f"{PREFIX}/", status_code=308)
