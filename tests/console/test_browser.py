"""The console in a real browser: Debian's Chromium driven by Playwright against a real
``pipecored serve`` process on the example configuration, its providers' calls going to
loopback fakes.

Skipped with a reason where there is no Chromium (or no Playwright); a failure instead where
``PIPECORED_TEST_REQUIRE`` names ``chromium`` (CI). Screenshots go to a temporary folder, or
to ``PIPECORED_CONSOLE_SCREENSHOTS`` when set (how ``docs/console/*.png`` are made).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ADMIN_KEY, Daemon, example_config, wait_until
from tests.fakes.twilio import FakeTwilio

SPANISH = "¡Hola, Begoña! ¿Confirmas tu mesa para mañana a las 21:30? 🍷"
DEMO_KEY = "demo-key"  # the example file's default
TWILIO_SID = "AC" + uuid.uuid5(uuid.NAMESPACE_DNS, "console.demo.twilio").hex
TWILIO_TOKEN = "demo-twilio-auth-token-5f4e3d2c1b"
TWILIO_NUMBER = "+15005550006"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def _required() -> bool:
    wanted = os.environ.get("PIPECORED_TEST_REQUIRE", "")
    return "chromium" in {w.strip() for w in wanted.split(",")}


def _chromium() -> str:
    path = os.environ.get("PIPECORED_TEST_CHROMIUM") or shutil.which("chromium")
    reason = None
    if not path or not Path(path).exists():
        reason = "no Chromium: install Debian's chromium or set PIPECORED_TEST_CHROMIUM"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "no Playwright: pip install playwright (never 'playwright install')"
    if reason is not None:
        if _required():
            pytest.fail(f"PIPECORED_TEST_REQUIRE names chromium, but {reason}")
        pytest.skip(reason)
    assert path is not None
    return path


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("PIPECORED_CONSOLE_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def world(
    tmp_path: Path, daemon_factory: Callable[..., Daemon]
) -> Iterator[tuple[Daemon, FakeTwilio]]:
    """The example configuration with every provider's base URL on a loopback fake, served by
    a real daemon."""
    with FakeTwilio({TWILIO_SID: TWILIO_TOKEN}) as twilio:
        config = example_config(tmp_path / "config")
        daemon_file = config / "pipecored.yaml"
        settings: dict[str, Any] = yaml.safe_load(daemon_file.read_text(encoding="utf-8"))
        settings["providers"]["twilio"] = {"baseUrl": twilio.url}
        for name in ("meta", "resend", "sendgrid"):  # never called here: nowhere to go
            settings["providers"][name]["baseUrl"] = twilio.url
        settings["server"] = {"publicUrl": "http://127.0.0.1"}
        daemon_file.write_text(yaml.safe_dump(settings), encoding="utf-8")
        daemon = daemon_factory(config, env={"PIPECORE_ADMIN_KEY": ADMIN_KEY}).start()
        yield daemon, twilio


def _send(daemon: Daemon, text: str) -> str:
    with daemon.client(DEMO_KEY) as client:
        r = client.post("/messaging/send/sms", json={"to": "+34600111222", "body": text})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _settled(daemon: Daemon, message_id: str) -> dict[str, Any]:
    def get() -> dict[str, Any] | None:
        with daemon.client(DEMO_KEY) as client:
            body: dict[str, Any] = client.get(f"/messaging/messages/{message_id}").json()
        return body if body["status"] in ("sent", "delivered", "failed") else None

    result: dict[str, Any] = wait_until(get)
    return result


def test_the_console_in_chromium(world: tuple[Daemon, FakeTwilio], screenshots: Path) -> None:
    from playwright.sync_api import Page, expect, sync_playwright

    executable = _chromium()
    daemon, twilio = world
    base = daemon.url
    elsewhere: list[str] = []

    def watch(page: Page) -> None:
        page.on(
            "request",
            lambda request: (
                None
                if request.url.startswith(base) or request.url.startswith("data:")
                else elsewhere.append(request.url)
            ),
        )

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            admin = browser.new_context(viewport={"width": 1280, "height": 900})
            page = admin.new_page()
            watch(page)

            # log in: every example tenant is listed
            page.goto(f"{base}/console/")
            expect(page).to_have_url(f"{base}/console/login?next=%2Fconsole%2F")
            page.get_by_label("API key").fill(ADMIN_KEY)
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_role("heading", name="Tenants")).to_be_visible()
            for tenant in ("demo", "tableflow_123", "genda_456", "roe_789"):
                expect(page.locator(f'tr[data-tenant="{tenant}"]')).to_be_visible()
            expect(page.locator('tr[data-tenant="tableflow_123"]')).to_contain_text("twilio")
            page.screenshot(path=screenshots / "tenants.png", full_page=True)

            # a message sent through the API is in the log, and its page has its attempts
            first = _send(daemon, SPANISH)
            assert _settled(daemon, first)["provider"] == "console"
            page.goto(f"{base}/console/tenants/demo/log")
            row = page.locator(f'tr[data-message="{first}"]')
            expect(row).to_contain_text("delivered")
            expect(row).to_contain_text("console")
            page.get_by_label("Status").select_option("delivered")  # filters submit on change
            expect(page).to_have_url(
                f"{base}/console/tenants/demo/log?channel=&status=delivered&direction="
            )
            expect(row).to_be_visible()
            page.screenshot(path=screenshots / "log.png", full_page=True)
            row.get_by_role("link").click()
            expect(page.get_by_role("heading", name=f"Message {first}")).to_be_visible()
            expect(page.locator("pre.text")).to_have_text(SPANISH)
            expect(page.locator("table")).to_contain_text("success")
            page.screenshot(path=screenshots / "message.png", full_page=True)

            page.goto(f"{base}/console/tenants/demo")
            expect(page.locator("#chart-volume svg")).to_be_visible()
            expect(page.locator("#chart-volume rect.s-accepted")).not_to_have_count(0)
            page.screenshot(path=screenshots / "tenant.png", full_page=True)

            # the provider switch: sms from the console provider to Twilio
            page.goto(f"{base}/console/tenants/demo/provider?channel=sms")
            page.get_by_label("Provider", exact=True).select_option("twilio")
            expect(page).to_have_url(
                f"{base}/console/tenants/demo/provider?channel=sms&provider=twilio"
            )
            page.on("dialog", lambda dialog: dialog.accept())
            page.locator("#cred-accountSid").fill(TWILIO_SID)
            page.locator("#cred-authToken").fill(TWILIO_TOKEN)
            page.get_by_role("button", name="Switch provider").click()
            # the phone number was left out: said next to its field, nothing changed
            error = page.locator("#cred-phoneNumber-error")
            expect(error).to_contain_text("phoneNumber")
            expect(page.locator("#cred-phoneNumber")).to_have_attribute("aria-invalid", "true")
            # the token typed is not sent back in the page: it is typed again
            assert TWILIO_TOKEN not in page.content()
            expect(page.locator("#cred-authToken")).to_have_value("")
            page.screenshot(path=screenshots / "provider-error.png", full_page=True)
            page.locator("#cred-authToken").fill(TWILIO_TOKEN)
            page.locator("#cred-phoneNumber").fill(TWILIO_NUMBER)
            page.get_by_role("button", name="Switch provider").click()
            expect(page.get_by_role("status")).to_contain_text("sms channel's provider was changed")

            second = _send(daemon, SPANISH + " (2)")
            carried = _settled(daemon, second)
            assert carried["provider"] == "twilio", carried
            assert carried["status"] == "sent"
            assert any(r.path.endswith("/Messages.json") for r in twilio.requests)
            page.goto(f"{base}/console/tenants/demo/log")
            expect(page.locator(f'tr[data-message="{second}"]')).to_contain_text("twilio")
            page.goto(f"{base}/console/tenants/demo/provider?channel=sms")
            expect(page.locator('tr[data-channel="sms"] td.provider')).to_have_text("twilio")
            # the token is never on the page
            assert TWILIO_TOKEN not in page.content()
            page.screenshot(path=screenshots / "provider.png", full_page=True)

            # an experiment: its arms with their numbers
            demo_file = daemon.config / "tenants" / "demo.yaml"
            demo = yaml.safe_load(demo_file.read_text(encoding="utf-8"))
            # one provider per arm; the variant, on Twilio, stopped (weight 0) so that every
            # message is delivered at once by the console
            variant = {
                "name": "variant",
                "weight": 0,
                "provider": "twilio",
                "credentials": {
                    "accountSid": TWILIO_SID,
                    "authToken": TWILIO_TOKEN,
                    "whatsappNumber": f"whatsapp:{TWILIO_NUMBER}",
                },
            }
            arms = [{"name": "control", "weight": 1, "provider": "console"}, variant]
            demo["channels"]["whatsapp"] = {"experiment": {"name": "split-test", "arms": arms}}
            demo_file.write_text(yaml.safe_dump(demo, allow_unicode=True), encoding="utf-8")
            with daemon.client(DEMO_KEY) as client:
                wait_until(
                    lambda: (
                        "experiment"
                        in client.get("/messaging/config/demo").json()["channels"]["whatsapp"]
                    )
                )
                for n in range(10):
                    sent = client.post(
                        "/messaging/send/whatsapp", json={"to": "+34600111222", "body": f"#{n}"}
                    )
                    assert sent.status_code == 202, sent.text

                def finished() -> list[dict[str, Any]] | None:
                    [e] = client.get("/messaging/experiments/demo").json()["experiments"]
                    return e["arms"] if sum(a["delivered"] for a in e["arms"]) == 10 else None

                arm_results = wait_until(finished)
            page.goto(f"{base}/console/tenants/demo/experiments")
            expect(page.get_by_role("heading", name="split-test")).to_be_visible()
            for arm in arm_results:
                row = page.get_by_role("row", name=arm["name"])
                expect(row).to_contain_text("console" if arm["name"] == "control" else "twilio")
                cells = row.locator("td.num")
                expect(cells.nth(1)).to_have_text(str(arm["messages"]))  # messages
                expect(cells.nth(3)).to_have_text(str(arm["delivered"]))  # delivered
            page.screenshot(path=screenshots / "experiments.png", full_page=True)

            # on a phone: the tenants page fits the screen's width
            phone = browser.new_context(
                viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
            )
            small = phone.new_page()
            watch(small)
            small.goto(f"{base}/console/login")
            small.get_by_label("API key").fill(ADMIN_KEY)
            small.get_by_role("button", name="Log in").click()
            expect(small.get_by_role("heading", name="Tenants")).to_be_visible()
            width = small.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, width
            small.screenshot(path=screenshots / "phone.png", full_page=True)
            phone.close()

            # a tenant's key sees its own tenant, and not another's page
            tenant = browser.new_context()
            own = tenant.new_page()
            watch(own)
            own.goto(f"{base}/console/login")
            own.get_by_label("API key").fill(DEMO_KEY)
            own.get_by_role("button", name="Log in").click()
            expect(own).to_have_url(f"{base}/console/tenants/demo")
            response = own.goto(f"{base}/console/tenants/tableflow_123")
            assert response is not None and response.status == 403
            expect(own.get_by_role("alert")).to_contain_text("may not act for that tenant")
            assert "TableFlow" not in own.content()
            tenant.close()
            admin.close()
        finally:
            browser.close()

    assert elsewhere == [], "the console made requests outside the daemon"
    with httpx.Client(base_url=base) as client:
        assert client.get("/console/static/console.js").status_code == 200
