"""The console through the whole app in process: who logs in and sees what, the session
cookie, CSRF and Origin checks, security headers, the log's filters and paging, a message's
attempts, and the provider switch with its validation errors."""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
import yaml

from pipecored.config.model import ChannelConfig
from pipecored.gateway import Gateway
from tests.conftest import ADMIN_KEY, HTTPJSON_SIGNING, HTTPJSON_TOKEN, ConfigDir, auth, eventually
from tests.console.conftest import (
    ACME_KEY,
    BASE,
    DEMO_KEY,
    FAILED_KEY_BURST,
    GLOBEX_KEY,
    ORIGIN,
    LoggedIn,
    csrf_of,
    log_in,
)

Make = tuple[Callable[[], httpx.AsyncClient], Gateway]
SPANISH = "¿Mañana a las 20:30? ¡Reserva confirmada! 🍷"


class _Inline(HTMLParser):
    """Collects what a strict CSP would block: inline scripts, style attributes and elements,
    inline event handlers, and anything loaded from another origin."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and not names.get("src"):
            self.problems.append("inline <script>")
        if tag == "style":
            self.problems.append("<style> element")
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.problems.append(f"{tag} {name}=")
            if name in ("src", "href", "action") and value and "//" in value.split("?")[0]:
                self.problems.append(f"{tag} {name}={value}")


def _no_inline(html: str) -> list[str]:
    parser = _Inline()
    parser.feed(html)
    return parser.problems


async def _send(client: httpx.AsyncClient, key: str, channel: str, **body: object) -> str:
    r = await client.post(f"/messaging/send/{channel}", json=body, headers=auth(key))
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


# -- logging in -----------------------------------------------------------------------------------


async def test_pages_need_a_login(console_app: Make) -> None:
    make, _ = console_app
    client = make()
    r = await client.get("/console/tenants/acme/log?status=failed")
    assert r.status_code == 303
    assert r.headers["location"] == (
        "/console/login?next=%2Fconsole%2Ftenants%2Facme%2Flog%3Fstatus%3Dfailed"
    )
    login = await client.get(r.headers["location"])
    assert login.status_code == 200
    assert '<label for="key">API key</label>' in login.text
    assert 'name="next" value="/console/tenants/acme/log?status=failed"' in login.text
    # /console without its slash goes to the console
    assert (await client.get("/console")).headers["location"] == "/console/"


async def test_login_sets_a_strict_session_cookie_and_goes_where_it_was_asked(
    console_app: Make,
) -> None:
    make, _ = console_app
    client = make()
    r = await client.post(
        "/console/login",
        data={"key": ADMIN_KEY, "next": "/console/tenants/globex"},
        headers=ORIGIN,
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/console/tenants/globex"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("pipecored_console=")
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/console"} <= attributes
    assert "secure" not in attributes  # plain http on loopback
    assert ADMIN_KEY not in cookie
    assert (await client.get("/console/tenants/globex")).status_code == 200


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("https://evil.example/", id="another-site"),
        pytest.param("//evil.example/console/", id="scheme-relative"),
        pytest.param("/messaging/logs/acme", id="outside-the-console"),
    ],
)
async def test_login_never_sends_the_user_off_the_console(console_app: Make, target: str) -> None:
    make, _ = console_app
    r = await make().post("/console/login", data={"key": ADMIN_KEY, "next": target}, headers=ORIGIN)
    assert r.headers["location"] == "/console/"


async def test_wrong_keys_are_throttled_like_the_apis(console_app: Make) -> None:
    make, gateway = console_app
    client = make()
    for _ in range(FAILED_KEY_BURST):
        r = await log_in(client, "not-a-key-0123456789")
        assert r.status_code == 401
        assert "That key is not known here." in r.text
        assert "not-a-key-0123456789" not in r.text
    r = await log_in(client, ADMIN_KEY)  # even the right key waits now
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    # the API's throttle: the same address is refused there too
    api = await client.get("/messaging/logs/acme", headers=auth(ADMIN_KEY))
    assert api.status_code == 429
    failures = gateway.metrics.auth_failures
    assert failures.labels("invalid_api_key")._value.get() == FAILED_KEY_BURST


async def test_login_from_another_site_is_refused(console_app: Make) -> None:
    make, _ = console_app
    client = make()
    r = await client.post(
        "/console/login", data={"key": ADMIN_KEY}, headers={"Origin": "https://evil.example"}
    )
    assert r.status_code == 403
    assert "set-cookie" not in r.headers


async def test_logout_ends_the_session(logged_in: LoggedIn) -> None:
    client = await logged_in(ADMIN_KEY)
    page = await client.get("/console/")
    stolen = dict(client.cookies)
    r = await client.post("/console/logout", data={"csrf": csrf_of(page.text)}, headers=ORIGIN)
    assert r.status_code == 303
    assert r.headers["location"] == "/console/login"
    # the old cookie, replayed, is no session any more
    client.cookies.clear()
    client.cookies.update(stolen)
    again = await client.get("/console/")
    assert again.status_code == 303
    assert again.headers["location"].startswith("/console/login")


async def test_a_key_removed_from_the_configuration_ends_its_sessions(
    logged_in: LoggedIn, console_app: Make, config_dir: ConfigDir
) -> None:
    _, gateway = console_app
    client = await logged_in(GLOBEX_KEY)
    assert (await client.get("/console/tenants/globex")).status_code == 200
    path = config_dir.path / "tenants" / "globex.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["apiKeys"] = ["globex-new-key-0123456789"]
    config_dir.write_tenant("globex", data)
    gateway.registry.load()
    r = await client.get("/console/tenants/globex")
    assert r.status_code == 303


# -- who sees what ---------------------------------------------------------------------------------


async def test_an_admin_sees_every_tenant(logged_in: LoggedIn) -> None:
    admin = await logged_in(ADMIN_KEY)
    r = await admin.get("/console/")
    assert r.status_code == 200
    for tenant in ("acme", "globex", "demo"):
        assert f'data-tenant="{tenant}"' in r.text
    assert "Acme" in r.text and "httpjson" in r.text


async def test_a_tenant_key_sees_its_own_tenant_only(logged_in: LoggedIn) -> None:
    acme = await logged_in(ACME_KEY)
    home = await acme.get("/console/")
    assert home.status_code == 303
    assert home.headers["location"] == "/console/tenants/acme"
    assert (await acme.get("/console/tenants/acme")).status_code == 200
    for path in (
        "/console/tenants/globex",
        "/console/tenants/globex/log",
        "/console/tenants/globex/provider",
        "/console/tenants/globex/suppressions",
        "/console/tenants/globex/webhooks",
        "/console/tenants/globex/experiments",
    ):
        r = await acme.get(path)
        assert r.status_code == 403, path
        assert "tenant_forbidden" in r.text
        assert "Globex" not in r.text
    missing = await (await logged_in(ADMIN_KEY)).get("/console/tenants/nobody")
    assert missing.status_code == 404
    assert "tenant_not_found" in missing.text


async def test_a_message_of_another_tenant_is_not_found(
    logged_in: LoggedIn, console_app: Make
) -> None:
    make, _ = console_app
    message_id = await _send(make(), GLOBEX_KEY, "whatsapp", to="+34600111222", body="hola")
    acme = await logged_in(ACME_KEY)
    r = await acme.get(f"/console/tenants/acme/messages/{message_id}")
    assert r.status_code == 404
    admin = await logged_in(ADMIN_KEY)
    # the admin may see it, but only under its own tenant's URL
    assert (await admin.get(f"/console/tenants/acme/messages/{message_id}")).status_code == 404
    assert (await admin.get(f"/console/tenants/globex/messages/{message_id}")).status_code == 200


# -- pages ---------------------------------------------------------------------------------------


async def test_every_page_has_the_security_headers_and_nothing_inline(
    logged_in: LoggedIn, console_app: Make
) -> None:
    make, _ = console_app
    message_id = await _send(make(), DEMO_KEY, "sms", to="+34600111222", body=SPANISH)
    login = await make().get("/console/login")
    assert login.headers["x-frame-options"] == "DENY"
    assert _no_inline(login.text) == []
    admin = await logged_in(ADMIN_KEY)
    pages = [
        "/console/",
        "/console/tenants/demo",
        "/console/tenants/demo?range=7d",
        "/console/tenants/demo?range=30d",
        "/console/tenants/demo/log",
        f"/console/tenants/demo/messages/{message_id}",
        "/console/tenants/demo/provider",
        "/console/tenants/demo/suppressions",
        "/console/tenants/demo/webhooks",
        "/console/tenants/demo/experiments",
        "/console/tenants/nobody",
    ]
    for path in pages:
        r = await admin.get(path)
        assert r.status_code in (200, 404), path
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert _no_inline(r.text) == [], path
    static = await admin.get("/console/static/console.css")
    assert static.status_code == 200
    assert static.headers["x-content-type-options"] == "nosniff"


async def test_tenant_page_counts_todays_messages_and_draws_the_charts(
    logged_in: LoggedIn, console_app: Make
) -> None:
    make, gateway = console_app
    for _ in range(3):
        await _send(make(), DEMO_KEY, "sms", to="+34600111222", body=SPANISH)
    await eventually(lambda: _delivered(gateway, "demo", 3))
    admin = await logged_in(ADMIN_KEY)
    r = await admin.get("/console/tenants/demo")
    assert r.status_code == 200
    # today: 3 accepted, 3 delivered, a 100% rate
    cards = dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)</dd>", r.text))
    assert cards["Accepted"] == "3"
    assert cards["Delivered"] == "3"
    assert cards["Delivery rate"] == "100%"
    for chart in ("chart-volume", "chart-rate", "chart-latency"):
        assert f'id="{chart}"' in r.text
    # the volume chart's bars and its data table say the same
    assert "accepted 3</title>" in r.text and "delivered 3</title>" in r.text
    listing = await admin.get("/console/")
    row = re.search(r'<tr data-tenant="demo">(.*?)</tr>', listing.text, re.S)
    assert row is not None
    assert re.findall(r'<td class="num">([^<]+)</td>', row.group(1)) == ["3", "3", "0", "100%"]


async def _delivered(gateway: Gateway, tenant: str, count: int) -> bool:
    stats = await gateway.store.stats(tenant)
    return stats.by_status.get("delivered", 0) == count


async def test_log_filters_and_pages_by_cursor(logged_in: LoggedIn, console_app: Make) -> None:
    make, gateway = console_app
    client = make()
    ids = [
        await _send(client, DEMO_KEY, "sms", to="+34600111222", body=f"{SPANISH} {n}")
        for n in range(55)
    ]
    await eventually(lambda: _delivered(gateway, "demo", 55))
    admin = await logged_in(ADMIN_KEY)
    first = await admin.get("/console/tenants/demo/log?channel=sms&direction=outbound")
    shown = re.findall(r'<tr data-message="([^"]+)">', first.text)
    assert shown == ids[::-1][:50]
    older = re.search(r'rel="next" href="\?([^"]+)"', first.text)
    assert older is not None
    query = older.group(1).replace("&amp;", "&")
    assert "channel=sms" in query and "direction=outbound" in query
    second = await admin.get(f"/console/tenants/demo/log?{query}")
    assert re.findall(r'<tr data-message="([^"]+)">', second.text) == ids[::-1][50:]
    assert 'rel="next"' not in second.text
    none = await admin.get("/console/tenants/demo/log?status=failed")
    assert "No messages match these filters." in none.text
    bad = await admin.get("/console/tenants/demo/log?status=lost")
    assert bad.status_code == 422
    assert "status: must be one of" in bad.text
    forged = await admin.get("/console/tenants/demo/log?cursor=%2F%2F")
    assert forged.status_code == 422


async def test_message_page_shows_the_text_and_its_attempts(
    logged_in: LoggedIn, console_app: Make
) -> None:
    make, gateway = console_app
    message_id = await _send(make(), DEMO_KEY, "sms", to="+34600111222", body=SPANISH)
    await eventually(lambda: _delivered(gateway, "demo", 1))
    demo = await logged_in(DEMO_KEY)
    r = await demo.get(f"/console/tenants/demo/messages/{message_id}")
    assert r.status_code == 200
    assert SPANISH in r.text  # UTF-8 as sent
    assert '<span class="status st-delivered">delivered</span>' in r.text
    assert '<span class="outcome o-success">success</span>' in r.text
    assert "<td>console</td>" in r.text


# -- the provider switch ------------------------------------------------------------------------


async def _switch_form(client: httpx.AsyncClient, query: str = "") -> str:
    r = await client.get(f"/console/tenants/acme/provider{query}")
    assert r.status_code == 200
    return csrf_of(r.text)


async def test_switching_a_provider_goes_through_the_config_service(
    logged_in: LoggedIn, console_app: Make, config_dir: ConfigDir
) -> None:
    make, _ = console_app
    admin = await logged_in(ADMIN_KEY)
    page = await admin.get("/console/tenants/acme/provider?channel=sms&provider=console")
    assert 'name="provider" value="console"' in page.text
    # secrets are masked in the current configuration
    assert HTTPJSON_TOKEN not in page.text and HTTPJSON_SIGNING not in page.text
    assert "****" + HTTPJSON_TOKEN[-4:] in page.text
    r = await admin.post(
        "/console/tenants/acme/provider",
        data={
            "csrf": csrf_of(page.text),
            "channel": "sms",
            "provider": "console",
            "isActive": "on",
        },
        headers=ORIGIN,
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/console/tenants/acme?switched=sms"
    written = yaml.safe_load((config_dir.path / "tenants" / "acme.yaml").read_text("utf-8"))
    assert written["channels"]["sms"]["provider"] == "console"
    # the next message goes through the new provider
    message_id = await _send(make(), ACME_KEY, "sms", to="+34600111222", body=SPANISH)
    detail = await eventually(lambda: _delivered_through(make(), message_id))
    assert detail["provider"] == "console"


async def _delivered_through(client: httpx.AsyncClient, message_id: str) -> dict[str, object]:
    r = await client.get(f"/messaging/messages/{message_id}", headers=auth(ADMIN_KEY))
    body: dict[str, object] = r.json()
    return body if body["status"] == "delivered" else {}


async def test_a_validation_error_is_shown_next_to_its_field(
    logged_in: LoggedIn, config_dir: ConfigDir
) -> None:
    before = (config_dir.path / "tenants" / "acme.yaml").read_bytes()
    admin = await logged_in(ADMIN_KEY)
    csrf = await _switch_form(admin, "?channel=sms&provider=httpjson")
    r = await admin.post(
        "/console/tenants/acme/provider",
        data={"csrf": csrf, "channel": "sms", "provider": "httpjson", "cred.token": ""},
        headers=ORIGIN,
    )
    assert r.status_code == 422
    field = re.search(
        r'<div class="field invalid">\s*<label for="cred-(\w+)">.*?<p class="field-error" '
        r'id="cred-\1-error">([^<]+)</p>',
        r.text,
        re.S,
    )
    assert field is not None, r.text
    assert field.group(2).startswith(f"credentials.{field.group(1)}")
    assert 'aria-invalid="true"' in r.text
    # what was typed into a secret field is never sent back
    typed = await admin.post(
        "/console/tenants/acme/provider",
        data={
            "csrf": csrf,
            "channel": "sms",
            "provider": "httpjson",
            "cred.token": "tok-typed-9876",
            "cred.bogus": "x",
        },
        headers=ORIGIN,
    )
    assert typed.status_code == 422
    assert "tok-typed-9876" not in typed.text
    assert (config_dir.path / "tenants" / "acme.yaml").read_bytes() == before


@pytest.mark.parametrize(
    ("headers", "csrf"),
    [
        pytest.param(ORIGIN, "wrong-token", id="wrong-token"),
        pytest.param(ORIGIN, None, id="no-token"),
        pytest.param({"Origin": "https://evil.example"}, "keep", id="other-origin"),
        pytest.param({}, "keep", id="no-origin"),
        pytest.param({"Referer": "https://evil.example/page"}, "keep", id="other-referer"),
    ],
)
async def test_a_change_needs_the_token_and_this_origin(
    logged_in: LoggedIn,
    config_dir: ConfigDir,
    headers: dict[str, str],
    csrf: str | None,
) -> None:
    before = (config_dir.path / "tenants" / "acme.yaml").read_bytes()
    admin = await logged_in(ADMIN_KEY)
    token = await _switch_form(admin)
    data = {"channel": "sms", "provider": "console", "isActive": "on"}
    if csrf is not None:
        data["csrf"] = token if csrf == "keep" else csrf
    r = await admin.post("/console/tenants/acme/provider", data=data, headers=headers)
    assert r.status_code == 403
    assert "csrf_rejected" in r.text
    assert (config_dir.path / "tenants" / "acme.yaml").read_bytes() == before


async def test_the_referer_stands_in_for_a_missing_origin(logged_in: LoggedIn) -> None:
    admin = await logged_in(ADMIN_KEY)
    token = await _switch_form(admin)
    r = await admin.post(
        "/console/tenants/acme/provider",
        data={"csrf": token, "channel": "sms", "provider": "console", "isActive": "on"},
        headers={"Referer": f"{BASE}/console/tenants/acme/provider"},
    )
    assert r.status_code == 303


async def test_a_tenant_key_cannot_switch_providers(
    logged_in: LoggedIn, config_dir: ConfigDir
) -> None:
    before = (config_dir.path / "tenants" / "acme.yaml").read_bytes()
    acme = await logged_in(ACME_KEY)
    page = await acme.get("/console/tenants/acme/provider")
    assert "Changes need an admin key" in page.text
    assert 'class="switch"' not in page.text
    r = await acme.post(
        "/console/tenants/acme/provider",
        data={"csrf": csrf_of(page.text), "channel": "sms", "provider": "console"},
        headers=ORIGIN,
    )
    assert r.status_code == 403
    assert "admin_required" in r.text
    assert (config_dir.path / "tenants" / "acme.yaml").read_bytes() == before


async def test_forms_that_are_not_urlencoded_or_too_large_are_refused(logged_in: LoggedIn) -> None:
    admin = await logged_in(ADMIN_KEY)
    token = await _switch_form(admin)
    as_json = await admin.post(
        "/console/tenants/acme/provider", json={"csrf": token}, headers=ORIGIN
    )
    assert as_json.status_code == 415
    huge = await admin.post(
        "/console/tenants/acme/provider",
        data={"csrf": token, "pad": "x" * 70_000},
        headers=ORIGIN,
    )
    assert huge.status_code == 413


# -- experiments ---------------------------------------------------------------------------------


async def test_the_experiments_page_shows_each_arm_with_its_numbers(
    logged_in: LoggedIn, console_app: Make
) -> None:
    make, gateway = console_app
    tenant = gateway.registry.snapshot.tenant("acme")
    assert tenant is not None
    sms = tenant.channels["sms"]
    arms = [
        {"name": "incumbent", "weight": 3, "provider": "console"},
        {
            "name": "challenger",
            "weight": 1,
            "provider": "httpjson",
            "baseUrl": sms.base_url,
            "credentials": dict(sms.credentials),
        },
    ]
    split = ChannelConfig.model_validate({"experiment": {"name": "split", "arms": arms}})
    channels = {**tenant.channels, "sms": split}
    gateway.registry.replace_tenant("acme", tenant.model_copy(update={"channels": channels}))

    api = make()
    for n in range(24):
        await _send(api, ACME_KEY, "sms", to="+34600111222", body=f"#{n} {SPANISH}")

    async def results() -> list[dict[str, Any]] | None:
        r = await api.get("/messaging/experiments/acme", headers=auth(ACME_KEY))
        [experiment] = r.json()["experiments"]
        done = sum(a["sent"] + a["delivered"] + a["failed"] for a in experiment["arms"])
        return experiment["arms"] if done == 24 else None

    arms_out = await eventually(results)
    page = await (await logged_in(ACME_KEY)).get("/console/tenants/acme/experiments")
    assert page.status_code == 200
    assert "split" in page.text and 'aria-current="page"' in page.text
    rows = re.findall(r"<tr>\s*<th scope=\"row\">(\w+)</th>(.*?)</tr>", page.text, re.S)
    shown = {name: re.findall(r'<td class="num">([^<]*)</td>', cells) for name, cells in rows}
    for arm in arms_out:
        weight, messages = shown[arm["name"]][0], shown[arm["name"]][1]
        assert (weight, messages) == (f"{arm['weight']:g}", str(arm["messages"]))
    assert sum(int(shown[name][1]) for name in shown) == 24
    assert "console" in page.text and "httpjson" in page.text
    assert _no_inline(page.text) == []
