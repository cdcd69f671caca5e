"""Text with a NUL character (U+0000) or a lone UTF-16 surrogate through a real daemon, on each
store.

PostgreSQL ``text`` cannot hold a NUL; SQLite can. Neither can write a lone surrogate (a JSON
``"\\ud800"`` escape, which ``json.loads`` accepts), which has no UTF-8 form. What a provider
tells us (an error, a provider id, a status callback, a customer's reply) is kept with each
replaced by U+FFFD on both stores: before, a provider error with a NUL on PostgreSQL, or a
provider id with a lone surrogate on either store, could not be recorded and the delivery
worker stopped claiming anything for every tenant, and a callback with one was answered 503
for ever. A client's send with a NUL in a field is a 422 naming it, before anything is
stored, the same on both stores (it was accepted and sent on).

One daemon per store serves the module's tests, which run in any order: each looks only at the
messages it made.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipecored.testing import Reply
from tests.conftest import (
    ADMIN_KEY,
    HTTPJSON_SIGNING,
    ConfigDir,
    Daemon,
    default_daemon_settings,
    free_port,
    httpjson_channel,
    wait_until,
)
from tests.fakes.httpjson import HttpJsonGateway, signed_events
from tests.pg import postgres_database

KEY = "acme-key-0123456789"
SMS = {"to": "+34600111222", "body": "hola"}
EMAIL = {"to": "ana@example.com", "subject": "Your booking", "htmlContent": "<p>See you</p>"}
REPLACED = "\ufffd"
_unique = itertools.count(1)


@dataclass
class Running:
    daemon: Daemon
    gateway: HttpJsonGateway

    def client(self, key: str = KEY) -> httpx.Client:
        return self.daemon.client(key)

    def call_back(self, events: list[dict[str, Any]]) -> httpx.Response:
        body, headers = signed_events(HTTPJSON_SIGNING, events)
        url = f"{self.daemon.url}/messaging/webhook/sms?tenant_id=acme&provider=httpjson"
        return httpx.post(url, content=body, headers=headers, timeout=10)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, httpjson_site: Path
) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp(f"nul-{request.param}")
    with contextlib.ExitStack() as stack:
        # a SQLite file, or a PostgreSQL database of the module's own (tests/pg.py)
        if request.param == "sqlite":
            store = f"sqlite:///{tmp / 'pipecored.db'}"
        else:
            store = stack.enter_context(postgres_database())
        gateway = HttpJsonGateway().start()
        stack.callback(gateway.stop)
        root = tmp / "config"
        (root / "tenants").mkdir(parents=True)
        cfg = ConfigDir(root)
        cfg.write_daemon({**default_daemon_settings(tmp / "unused.db"), "store": store})
        cfg.write_tenant(
            "acme",
            {
                "name": "Acme",
                "apiKeys": [KEY],
                "channels": {
                    "sms": httpjson_channel(gateway.url),
                    "email": httpjson_channel(gateway.url),
                },
            },
        )
        # as tests/conftest.py's daemon_factory, for the whole module
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPECORE", "PYTEST"))}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(httpjson_site), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        daemon = Daemon(root, free_port(), env, tmp / "daemon.log")
        stack.callback(daemon.ensure_stopped)
        yield Running(daemon.start(), gateway)


def _message(client: httpx.Client, message_id: str) -> dict[str, Any]:
    response = client.get(f"/messaging/messages/{message_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _accepted(client: httpx.Client, body: dict[str, Any] | None = None) -> str:
    response = client.post("/messaging/send/sms", json=body or SMS)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _settled(client: httpx.Client, message_id: str, *statuses: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        current = _message(client, message_id)
        return current if current["status"] in statuses else None

    found: dict[str, Any] = wait_until(reached)
    return found


def _delivery_goes_on(running: Running) -> None:
    """Every outcome was written: the daemon is ready and the next message is sent."""
    with running.client() as client:
        _settled(client, _accepted(client, {**SMS, "body": "después"}), "sent")
    assert httpx.get(f"{running.daemon.url}/readyz", timeout=10).status_code == 200


def _log_size(client: httpx.Client, direction: str = "outbound") -> int:
    response = client.get("/messaging/logs/acme", params={"direction": direction, "limit": 500})
    assert response.status_code == 200, response.text
    return len(response.json()["items"])


def _assert_error(response: httpx.Response, status: int, code: str, names: str) -> None:
    """The SPEC's error shape, naming ``names`` first in its message."""
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"].startswith(names), error


# -- what providers tell us ---------------------------------------------------------------------

# a NUL, and a UTF-16 surrogate on its own (a JSON "\\ud800" escape, which json.dumps writes and
# json.loads reads back: neither store can write it as UTF-8)
UNSTORABLE = pytest.mark.parametrize("bad", ["\x00", "\ud800"], ids=["nul", "lone-surrogate"])


@UNSTORABLE
def test_a_provider_refusal_with_unstorable_text_fails_the_message_with_it_and_delivery_goes_on(
    running: Running, bad: str
) -> None:
    running.gateway.script_next(Reply(400, json.dumps({"error": f"number{bad}blocked"}).encode()))
    with running.client() as client:
        failed = _settled(client, _accepted(client), "failed")
    assert failed["errorMessage"] == f"number{REPLACED}blocked"
    assert failed["attempts"][0]["errorMessage"] == f"number{REPLACED}blocked"
    _delivery_goes_on(running)


@UNSTORABLE
def test_a_retryable_provider_error_with_unstorable_text_is_recorded_and_retried(
    running: Running, bad: str
) -> None:
    running.gateway.script_next(Reply(503, json.dumps({"error": f"busy{bad}"}).encode()))
    with running.client() as client:
        sent = _settled(client, _accepted(client), "sent")
    assert [(a["outcome"], a["errorMessage"]) for a in sent["attempts"]] == [
        ("retryable_error", f"busy{REPLACED}"),
        ("success", None),
    ]
    _delivery_goes_on(running)


@UNSTORABLE
def test_a_provider_message_id_with_unstorable_text_is_kept_and_its_callbacks_find_it(
    running: Running, bad: str
) -> None:
    raw_id = f"hj{bad}{next(_unique)}"
    running.gateway.script_next(Reply(201, json.dumps({"id": raw_id}).encode()))
    with running.client() as client:
        message_id = _accepted(client)
        sent = _settled(client, message_id, "sent")
        assert sent["providerMessageId"] == raw_id.replace(bad, REPLACED)

        # the provider names it as it did in its answer
        response = running.call_back([{"id": raw_id, "status": "delivered"}])
        assert response.status_code == 200, response.text
        assert _message(client, message_id)["status"] == "delivered"
    _delivery_goes_on(running)


@UNSTORABLE
def test_a_status_callback_with_unstorable_text_is_applied(running: Running, bad: str) -> None:
    with running.client() as client:
        message_id = _accepted(client)
        sent = _settled(client, message_id, "sent")
        events = [
            {
                "id": sent["providerMessageId"],
                "status": "failed",
                "errorCode": f"300{bad}06",
                "errorMessage": f"unreachable{bad}carrier",
            },
            # and one for a message no answer has named yet: held until one does
            {"id": f"hj-later-{next(_unique)}", "status": "failed", "errorMessage": f"later{bad}"},
        ]

        response = running.call_back(events)

        assert response.status_code == 200, response.text
        failed = _message(client, message_id)
    assert (failed["status"], failed["errorCode"], failed["errorMessage"]) == (
        "failed",
        f"300{REPLACED}06",
        f"unreachable{REPLACED}carrier",
    )


@UNSTORABLE
def test_an_inbound_message_with_unstorable_text_is_logged_once(running: Running, bad: str) -> None:
    provider_id = f"in-{next(_unique)}"
    events = [{"from": "+34600999888", "to": "+34600111222", "body": f"sí{bad}", "id": provider_id}]
    with running.client() as client:
        before = _log_size(client, "inbound")

        response = running.call_back(events)
        assert response.status_code == 200, response.text
        again = running.call_back(events)  # the provider's retry: the same message
        assert again.status_code == 200, again.text

        assert _log_size(client, "inbound") == before + 1
        page = client.get("/messaging/logs/acme", params={"direction": "inbound", "limit": 1})
        [item] = page.json()["items"]
    assert item["body"] == f"sí{REPLACED}"


# -- what clients send ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "body", "field"),
    [
        pytest.param("sms", {**SMS, "body": "a\x00b"}, "body", id="sms-body"),
        pytest.param("sms", {**SMS, "to": "+3460011\x001222"}, "to", id="sms-to"),
        pytest.param(
            "sms",
            {"to": SMS["to"], "media": [{"url": "https://x.test/a.png", "caption": "c\x00"}]},
            "media.0.caption",
            id="media-caption",
        ),
        pytest.param(
            "sms",
            {"to": SMS["to"], "template": {"name": "t", "variables": {"1": "A\x00"}}},
            "template.variables: 1:",
            id="template-variable",
        ),
        pytest.param("email", {**EMAIL, "subject": "S\x00"}, "subject", id="email-subject"),
        pytest.param("email", {**EMAIL, "htmlContent": "<p>\x00"}, "htmlContent", id="html"),
        pytest.param("email", {**EMAIL, "textContent": "\x00"}, "textContent", id="text"),
        pytest.param(
            "email", {**EMAIL, "from": "Ana\x00 <ana@example.com>"}, "from", id="email-from"
        ),
        pytest.param(
            "email",
            {**EMAIL, "headers": {"X-Ref": "1\x00"}},
            "headers: X-Ref:",
            id="header-value",
        ),
        pytest.param(
            "email", {**EMAIL, "headers": {"X-\x00": "1"}}, "headers: a name", id="header-name"
        ),
        pytest.param("email", {**EMAIL, "tags": {"k": "v\x00"}}, "tags: k:", id="tag"),
    ],
)
def test_a_send_with_a_nul_is_422_naming_the_field(
    running: Running, channel: str, body: dict[str, Any], field: str
) -> None:
    with running.client() as client:
        before = _log_size(client)
        response = client.post(f"/messaging/send/{channel}", json=body)
        _assert_error(response, 422, "validation_error", field)
        assert _log_size(client) == before


def test_a_nul_written_as_a_json_escape_is_422(running: Running) -> None:
    with running.client() as client:
        before = _log_size(client)
        response = client.post(
            "/messaging/send/sms",
            content=b'{"to": "+34600111222", "body": "a\\u0000b"}',
            headers={"Content-Type": "application/json"},
        )
        _assert_error(response, 422, "validation_error", "body")
        assert _log_size(client) == before


def test_a_suppression_reason_with_a_nul_is_422(running: Running) -> None:
    with running.client() as client:
        response = client.post(
            "/messaging/suppressions/acme",
            json={"channel": "sms", "address": "+34600111333", "reason": "asked\x00"},
        )
        _assert_error(response, 422, "validation_error", "reason")
        listed = client.get("/messaging/suppressions/acme")
        assert listed.status_code == 200, listed.text
        assert "+34600111333" not in listed.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "", id="get"),
        pytest.param("POST", "/cancel", id="cancel"),
        pytest.param("POST", "/retry", id="retry"),
    ],
)
def test_a_message_id_with_a_nul_is_404(running: Running, method: str, path: str) -> None:
    with running.client(ADMIN_KEY) as client:
        response = client.request(method, f"/messaging/messages/msg_01%00x{path}")
        _assert_error(response, 404, "message_not_found", "no message")
