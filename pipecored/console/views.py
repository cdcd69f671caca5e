"""The console's pages. Each handler: the session's principal, one service (or overview) call,
a template. What a principal may see or change is decided by the service, as for the API: a
tenant key asking for another tenant's page gets the service's 403, an unknown tenant its 404,
both as an HTML page.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode

import structlog
from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from pipecored.access import Principal
from pipecored.api.message_log import decode_cursor, encode_cursor
from pipecored.api.serializers import log_item, message_detail, tenant_view
from pipecored.config.registry import TenantEntry, key_digest
from pipecored.console.charts import Chart, Series, bar_chart, line_chart
from pipecored.console.security import over_tls, same_origin
from pipecored.console.sessions import COOKIE, Session, Sessions
from pipecored.errors import (
    ApiError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    StoreError,
    UnsupportedMediaType,
    ValidationFailed,
)
from pipecored.events.worker import endpoint_label
from pipecored.gateway import Gateway
from pipecored.masking import MASK, mask
from pipecored.overview import DEFAULT_RANGE, RANGES, Overview
from pipecored.store import LogFilter
from pipecored.store.base import DIRECTIONS, MESSAGE_STATUSES, ActivityBucket

log = structlog.get_logger("pipecored.console")

PREFIX: Final = "/console"
LOG_PAGE: Final = 50
SUPPRESSIONS_PAGE: Final = 50
FORM_LIMIT: Final = 64 * 1024  # the console's forms are a few fields


@dataclass
class Console:
    gateway: Gateway
    overview: Overview
    sessions: Sessions
    templates: Environment


@dataclass(frozen=True, slots=True)
class Visit:
    """An authenticated console request."""

    request: Request
    console: Console
    session: Session
    principal: Principal

    @property
    def gateway(self) -> Gateway:
        return self.console.gateway


class CsrfRejected(Forbidden):
    code = "csrf_rejected"


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def _public_url(console: Console) -> str | None:
    return console.gateway.registry.snapshot.daemon.server.public_url


def render(
    request: Request,
    template: str,
    *,
    status: int = 200,
    visit: Visit | None = None,
    **context: Any,
) -> HTMLResponse:
    console = console_of(request)
    page = console.templates.get_template(template)
    html = page.render(
        prefix=PREFIX,
        principal=visit.principal if visit else None,
        csrf=visit.session.csrf if visit else None,
        path=request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status)


def tenant_of(visit: Visit) -> TenantEntry:
    """The tenant the page's URL names, as this visit may see it: 403 for another tenant's key,
    404 if unknown, before anything of it is read."""
    return visit.gateway.service.tenant_entry(
        visit.principal, visit.request.path_params["tenant_id"]
    )


def render_tenant(visit: Visit, entry: TenantEntry, template: str, **context: Any) -> HTMLResponse:
    """A page of one tenant: its header (id, name and tabs) and ``context``."""
    return render(
        visit.request,
        template,
        visit=visit,
        tenant_id=entry.tenant_id,
        tenant_name=entry.config.name if entry.config else None,
        **context,
    )


def error_page(request: Request, exc: ApiError, visit: Visit | None = None) -> HTMLResponse:
    return render(
        request,
        "error.html",
        status=exc.status,
        visit=visit,
        code=exc.code,
        message=exc.message,
        title=f"{exc.status}",
    )


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/login?{urlencode({'next': target})}", status_code=303)


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body of at most :data:`FORM_LIMIT` bytes; a
    field given twice keeps its first value."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("the console's forms are sent url-encoded")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > FORM_LIMIT:
            raise PayloadTooLarge("the form is larger than the console accepts")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed("the form is not UTF-8", field="form") from None
    form: dict[str, str] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        form.setdefault(name, value)
    return form


Handler = Callable[[Visit], Awaitable[Response]]


def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A console page: needs a live session (else the login page), and a POST needs the
    session's CSRF token and this console's origin. An ApiError (403, 404, 422, ...) or a store
    failure becomes an HTML page with its status."""

    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        console = console_of(request)
        session = console.sessions.get(request.cookies.get(COOKIE))
        snapshot = console.gateway.registry.snapshot
        principal = session.principal(snapshot) if session else None
        if session is None or principal is None:
            if request.method == "GET":
                return _login_redirect(request)
            return error_page(
                request,
                CsrfRejected("log in again: this session has ended", code="session_expired"),
            )
        visit = Visit(request, console, session, principal)
        try:
            if request.method == "POST":
                form = await read_form(request)
                if not same_origin(request, _public_url(console)):
                    raise CsrfRejected("this form was not sent from this console's own pages")
                if not session.csrf_matches(form.get("csrf")):
                    raise CsrfRejected("the form's token does not match this session")
                request.state.form = form
            return await handler(visit)
        except ApiError as exc:
            return error_page(request, exc, visit)
        except StoreError as exc:
            log.error("console.store_unavailable", path=request.url.path, error=str(exc))
            unavailable = ServiceUnavailable(
                "the message store is unavailable; try again shortly", code="store_unavailable"
            )
            return error_page(request, unavailable, visit)

    return run


# -- login and logout ----------------------------------------------------------------------------


def _next_path(raw: str | None) -> str:
    """Where to go after logging in: a console path only (never another site)."""
    if raw and raw.startswith(PREFIX + "/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return PREFIX + "/"


async def login_form(request: Request) -> Response:
    console = console_of(request)
    session = console.sessions.get(request.cookies.get(COOKIE))
    if session is not None and session.principal(console.gateway.registry.snapshot):
        return RedirectResponse(_next_path(request.query_params.get("next")), status_code=303)
    return render(request, "login.html", next=_next_path(request.query_params.get("next")))


async def login(request: Request) -> Response:
    """Log in with an API key. Wrong keys count against the same per-address throttle as the
    API's (``auth.failedKeyLimit``): past it, the key is not even looked at."""
    console = console_of(request)
    gateway = console.gateway
    snapshot = gateway.registry.snapshot
    if not same_origin(request, snapshot.daemon.server.public_url):
        return error_page(request, CsrfRejected("log in from this console's own page"))
    try:
        form = await read_form(request)
    except ApiError as exc:
        return error_page(request, exc)
    next_path = _next_path(form.get("next"))
    address = request.client.host if request.client else "unknown"
    limit = snapshot.daemon.auth.failed_key_limit
    throttled = gateway.auth_failures.wait(address, limit)
    if throttled > 0:
        gateway.metrics.auth_failures.labels("throttled").inc()
        response = render(
            request,
            "login.html",
            status=429,
            next=next_path,
            error=f"Too many wrong keys from this address: try again in {throttled:.0f} s.",
        )
        response.headers["Retry-After"] = str(max(1, round(throttled)))
        return response
    key = form.get("key", "").strip()
    digest = key_digest(key) if key else b""
    if not key or digest not in snapshot.keys:
        gateway.auth_failures.failed(address, limit)
        reason = "missing_api_key" if not key else "invalid_api_key"
        gateway.metrics.auth_failures.labels(reason).inc()
        log.warning("auth.failed", client=address, reason=reason, path=request.url.path)
        return render(
            request, "login.html", status=401, next=next_path, error="That key is not known here."
        )
    session_id, session = console.sessions.create(digest)
    log.info("console.login", key=f"sha256:{session.key_id}", client=address)
    redirect = RedirectResponse(next_path, status_code=303)
    redirect.set_cookie(
        COOKIE,
        session_id,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=over_tls(request, snapshot.daemon.server.public_url),
    )
    return redirect


@page
async def logout(visit: Visit) -> Response:
    request = visit.request
    visit.console.sessions.end(request.cookies.get(COOKIE))
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


# -- tenants -------------------------------------------------------------------------------------


@page
async def tenants(visit: Visit) -> Response:
    after = visit.request.query_params.get("after") or None
    listing = await visit.console.overview.tenants(visit.principal, after=after)
    if visit.principal.tenant_id is not None and len(listing.items) == 1 and after is None:
        # a tenant's own key has one tenant to look at
        only = listing.items[0].tenant_id
        return RedirectResponse(f"{PREFIX}/tenants/{quote(only)}", status_code=303)
    return render(visit.request, "tenants.html", visit=visit, page=listing, title="Tenants")


def _bucket_label(start: float, bucket_seconds: int) -> str:
    moment = datetime.fromtimestamp(start, UTC)
    if bucket_seconds < 3600 * 24 and bucket_seconds <= 3600:
        return moment.strftime("%H:00")
    if bucket_seconds < 3600 * 24:
        return moment.strftime("%d %b %H:00")
    return moment.strftime("%d %b")


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%".replace(".0%", "%")


def _millis(value: float) -> str:
    return f"{value / 1000:.2f} s" if value >= 10_000 else f"{value:,.0f} ms"


def activity_charts(buckets: list[ActivityBucket], bucket_seconds: int) -> list[Chart]:
    labels = [_bucket_label(b.start, bucket_seconds) for b in buckets]
    sampled = any(b.latency_sampled for b in buckets)
    return [
        bar_chart(
            "chart-volume",
            "Accepted and delivered",
            "Outbound messages accepted in each interval, and how many of them were delivered",
            labels,
            [
                Series("accepted", "s-accepted", [b.accepted for b in buckets]),
                Series("delivered", "s-delivered", [b.delivered for b in buckets]),
            ],
            _count,
        ),
        line_chart(
            "chart-rate",
            "Delivery rate",
            "Delivered (or read) out of those settled: sent, delivered, read or failed",
            labels,
            [Series("delivery rate", "s-rate", [b.delivery_rate for b in buckets])],
            _percent,
            top=1.0,
        ),
        line_chart(
            "chart-latency",
            "Latency",
            "From acceptance to the provider's acceptance"
            + (" (busy intervals from a sample of their messages)" if sampled else ""),
            labels,
            [
                Series("p50", "s-p50", [b.latency_p50_ms for b in buckets]),
                Series("p95", "s-p95", [b.latency_p95_ms for b in buckets]),
            ],
            _millis,
        ),
    ]


@page
async def tenant(visit: Visit) -> Response:
    request = visit.request
    tenant_id = request.path_params["tenant_id"]
    range_name = request.query_params.get("range", DEFAULT_RANGE)
    overview = visit.console.overview
    summary = await overview.tenant(visit.principal, tenant_id)
    buckets = await overview.activity(visit.principal, tenant_id, range_name=range_name)
    window = RANGES[range_name]
    return render(
        request,
        "tenant.html",
        visit=visit,
        tenant=summary,
        charts=activity_charts(buckets, window.bucket_seconds),
        ranges=RANGES,
        range_name=range_name,
        switched=request.query_params.get("switched"),
        title=summary.name or tenant_id,
        tab="overview",
    )


# -- the log and a message -----------------------------------------------------------------------


def _choice(request: Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.query_params.get(name) or None
    if value is not None and value not in allowed:
        raise ValidationFailed(f"{name}: must be one of {', '.join(allowed)}", field=name)
    return value


@page
async def message_log(visit: Visit) -> Response:
    request = visit.request
    service = visit.gateway.service
    entry = tenant_of(visit)
    tenant_id = entry.tenant_id
    cursor = request.query_params.get("cursor") or None
    filters = {
        "channel": _choice(request, "channel", service.channels.names),
        "status": _choice(request, "status", MESSAGE_STATUSES),
        "direction": _choice(request, "direction", DIRECTIONS),
    }
    where = LogFilter(before_seq=decode_cursor(cursor) if cursor else None, **filters)
    result = await service.logs(visit.principal, tenant_id, limit=LOG_PAGE, where=where)
    next_query = None
    if result.next_seq is not None:
        kept = {k: v for k, v in filters.items() if v}
        next_query = urlencode({**kept, "cursor": encode_cursor(result.next_seq)})
    return render_tenant(
        visit,
        entry,
        "log.html",
        items=[log_item(r) for r in result.items],
        filters=filters,
        channels=service.channels.names,
        statuses=MESSAGE_STATUSES,
        directions=DIRECTIONS,
        next_query=next_query,
        first_page=cursor is None,
        title="Log",
        tab="log",
    )


@page
async def message(visit: Visit) -> Response:
    request = visit.request
    service = visit.gateway.service
    entry = tenant_of(visit)
    tenant_id = entry.tenant_id
    record = await service.message(visit.principal, request.path_params["message_id"])
    if record.tenant_id != tenant_id:
        # the URL names another tenant than the message's: as if it did not exist
        raise NotFound(f"no message {record.id!r}", code="message_not_found")
    payload = record.payload
    content = {
        name: payload[name]
        for name in ("subject", "body", "text")
        if isinstance(payload.get(name), str)
    }
    return render_tenant(
        visit,
        entry,
        "message.html",
        item=message_detail(record),
        content=content,
        template_ref=payload.get("template"),
        title=f"Message {record.id}",
        tab="log",
    )


# -- the provider switch ------------------------------------------------------------------------


def _provider_context(
    visit: Visit,
    tenant_id: str,
    *,
    channel: str | None,
    provider: str | None,
    values: Mapping[str, str] | None = None,
    error: ValidationFailed | None = None,
) -> dict[str, Any]:
    service = visit.gateway.service
    entry = service.tenant_entry(visit.principal, tenant_id)
    providers = visit.gateway.providers
    view = tenant_view(entry, providers)
    channels = view["channels"]
    channel = channel or next(iter(sorted(channels)), None) or service.channels.names[0]
    current = channels.get(channel)
    if provider is None or provider not in providers:
        provider = current["provider"] if current else None
    serving = sorted(name for name, p in providers.items() if channel in p.channels)
    if provider not in serving:
        provider = serving[0] if serving else None
    fields = []
    chosen = providers.get(provider) if provider else None
    if chosen is not None:
        shown = current["credentials"] if current and current["provider"] == provider else {}
        for credential in chosen.credentials:
            if credential.channels is not None and channel not in credential.channels:
                continue
            name = credential.name
            value = values.get(f"cred.{name}") if values is not None else shown.get(name, "")
            if credential.secret and value and not value.startswith(MASK):
                # a secret typed into a form that came back with an error is never echoed in
                # the page: it is typed again
                value = ""
            fields.append(
                {
                    "name": name,
                    "secret": credential.secret,
                    "required": credential.required_for(channel),
                    "description": credential.description,
                    "value": value or "",
                }
            )
    field_error = error.field if error is not None else None
    return {
        "tenant_id": tenant_id,
        "tenant_name": entry.config.name if entry.config else None,
        "view": view,
        "channel": channel,
        "provider": provider,
        "all_channels": service.channels.names,
        "serving": serving,
        "fields": fields,
        "is_active": _is_active(current, values),
        "error": error.message if error is not None else None,
        "error_field": field_error,
        "title": "Provider",
        "tab": "provider",
    }


def _is_active(current: Mapping[str, Any] | None, values: Mapping[str, str] | None) -> bool:
    """The form's checkbox: as the user sent it, else as configured (a new channel: on)."""
    if values is not None:
        return values.get("isActive") == "on"
    return bool(current["isActive"]) if current is not None else True


@page
async def provider_form(visit: Visit) -> Response:
    request = visit.request
    context = _provider_context(
        visit,
        request.path_params["tenant_id"],
        channel=request.query_params.get("channel") or None,
        provider=request.query_params.get("provider") or None,
    )
    return render(request, "provider.html", visit=visit, **context)


@page
async def switch_provider(visit: Visit) -> Response:
    """The provider switch, through the same service call as ``POST /messaging/config/provider``:
    an admin key only, written to the tenant's file, live for the next send."""
    request = visit.request
    tenant_id = request.path_params["tenant_id"]
    form: dict[str, str] = request.state.form
    data: dict[str, Any] = {
        "channel": form.get("channel", ""),
        "provider": form.get("provider", ""),
        "isActive": form.get("isActive") == "on",
        # a field left empty is not sent: the service names the credential that is missing
        "credentials": {
            name.removeprefix("cred."): value
            for name, value in form.items()
            if name.startswith("cred.") and value != ""
        },
    }
    service = visit.gateway.service
    service.tenant_entry(visit.principal, tenant_id)  # 403/404 before anything else
    try:
        change = await service.set_provider(visit.principal, tenant_id, data)
    except ValidationFailed as exc:
        context = _provider_context(
            visit,
            tenant_id,
            channel=data["channel"] or None,
            provider=data["provider"] or None,
            values=form,
            error=exc,
        )
        return render(request, "provider.html", status=exc.status, visit=visit, **context)
    log.info(
        "console.provider_switched",
        tenant=tenant_id,
        channel=data["channel"],
        provider=data["provider"],
        key=f"sha256:{visit.session.key_id}",
    )
    target = f"{PREFIX}/tenants/{quote(change.tenant_id)}?" + urlencode(
        {"switched": data["channel"]}
    )
    return RedirectResponse(target, status_code=303)


# -- suppressions and webhook endpoints ----------------------------------------------------------


@page
async def suppressions(visit: Visit) -> Response:
    request = visit.request
    service = visit.gateway.service
    entry = tenant_of(visit)
    tenant_id = entry.tenant_id
    channel = _choice(request, "channel", service.channels.names)
    raw_after = request.query_params.get("after") or None
    after = decode_cursor(raw_after, field="after") if raw_after else None
    listing = await service.suppressions(
        visit.principal, tenant_id, channel=channel, after=after, limit=SUPPRESSIONS_PAGE
    )
    next_query = None
    if listing.next_seq is not None:
        kept = {"channel": channel} if channel else {}
        next_query = urlencode({**kept, "after": encode_cursor(listing.next_seq)})
    return render_tenant(
        visit,
        entry,
        "suppressions.html",
        items=listing.items,
        channel=channel,
        channels=service.channels.names,
        next_query=next_query,
        title="Suppressions",
        tab="suppressions",
    )


@page
async def webhooks(visit: Visit) -> Response:
    entry = tenant_of(visit)
    health = await visit.gateway.service.endpoints(visit.principal, entry.tenant_id)
    hooks = entry.config.webhooks if entry.config else ()
    # one health per configured endpoint, in the file's order (their URLs are distinct)
    endpoints = [
        {
            "label": endpoint_label(hook.url),
            "health": endpoint,
            "config": {"events": hook.events, "secret": mask(hook.secret)},
        }
        for hook, endpoint in zip(hooks, health, strict=True)
    ]
    return render_tenant(
        visit,
        entry,
        "webhooks.html",
        endpoints=endpoints,
        title="Webhooks",
        tab="webhooks",
    )


@page
async def experiments(visit: Visit) -> Response:
    """Each provider experiment of the tenant with its arms' results (the service's
    experiments call, as GET /messaging/experiments answers it)."""
    entry = tenant_of(visit)
    results = await visit.gateway.service.experiments(visit.principal, entry.tenant_id)
    return render_tenant(
        visit,
        entry,
        "experiments.html",
        experiments=results,
        title="Experiments",
        tab="experiments",
    )


# -- template helpers ----------------------------------------------------------------------------


def when(value: float | str | None) -> str:
    """A time as the console shows it: UTC, to the second."""
    if value is None:
        return "\u2013"
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    else:
        moment = datetime.fromtimestamp(value, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: float | None) -> str:
    if value is None:
        return "\u2013"
    seconds = max(0.0, time.time() - value)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


FILTERS: Final[dict[str, Callable[..., str]]] = {
    "when": when,
    "ago": ago,
    "number": _count,
    "percent": _percent,
    "millis": _millis,
}
