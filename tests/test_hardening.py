"""Attacks on a running daemon over loopback (issue 14): a key in conflict acting as another
tenant, credentials echoed by a provider in encoded forms, strange or huge config files, and a
renamed tenant file locked out by a conflict with itself."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
import yaml
from starlette.responses import JSONResponse

from pipecored.testing import RecordedRequest
from tests.conftest import ADMIN_KEY, ConfigDir, Daemon, default_daemon_settings, wait_until
from tests.fakes.twilio import FakeTwilio
from tests.test_masking import ACCOUNT, TRICKY, leaked

ACME_KEY = "acme-key-0123456789"
GLOBEX_KEY = "globex-key-0123456789"


def _tenant_invalid_lines(daemon: Daemon, tenant: str) -> int:
    return sum(
        1
        for line in daemon.output().splitlines()
        if '"config.tenant_invalid"' in line and f'"tenant":"{tenant}"' in line
    )


def test_a_key_in_conflict_never_acts_as_another_tenant(
    config_dir: ConfigDir, daemon_factory: Callable[..., Daemon]
) -> None:
    """acme's file is given globex's key (an operator's slip), which the reload refuses; a
    config API write on acme must not then make that key act as acme: not at once, not after
    the file is read again, not after a restart."""
    daemon = daemon_factory(config_dir.path).start()
    acme_file = config_dir.path / "tenants" / "acme.yaml"
    data = yaml.safe_load(acme_file.read_text(encoding="utf-8"))
    data["apiKeys"].append(GLOBEX_KEY)
    config_dir.write_tenant("acme", data)
    with daemon.client(ADMIN_KEY) as admin, daemon.client(GLOBEX_KEY) as globex:
        wait_until(lambda: admin.get("/messaging/config/acme").json().get("configError"))

        written = admin.post(
            "/messaging/config/provider",
            json={"tenantId": "acme", "channel": "sms", "provider": "console", "isActive": True},
        )

        assert written.status_code == 409, written.text
        error = written.json()["error"]
        assert error["code"] == "tenant_config_invalid"
        assert "tenants/acme.yaml: apiKeys.1" in error["message"]
        assert globex.get("/messaging/config/acme").status_code == 403
        assert globex.get("/messaging/config/globex").status_code == 200

        # the file read again (the write's own rename, then an edit) changes nothing
        before = _tenant_invalid_lines(daemon, "acme")
        config_dir.write_tenant("acme", {**data, "name": "Acme again"})
        wait_until(lambda: _tenant_invalid_lines(daemon, "acme") > before)
        assert globex.get("/messaging/config/acme").status_code == 403
        assert globex.get("/messaging/config/globex").status_code == 200
    assert daemon.stop() == 0

    # after a restart no file order decides it: the key is nobody's until the files agree
    restarted = daemon_factory(config_dir.path).start()
    with restarted.client(GLOBEX_KEY) as globex:
        assert globex.get("/messaging/config/acme").status_code in (401, 403)
        assert globex.get("/messaging/send/sms").status_code != 200


@pytest.fixture
def echoing_twilio() -> Iterator[FakeTwilio]:
    """Twilio refusing every message with an error text that echoes the request it got: the
    Basic-auth header as sent, the form body as sent, and the token JSON- and URL-encoded."""
    fake = FakeTwilio().start()

    def echo(request: RecordedRequest) -> JSONResponse:
        echoed = (
            f"Authorization: {request.headers.get('authorization')}; "
            f"body: {request.body.decode()}; token {json.dumps(TRICKY)} {quote_plus(TRICKY)}"
        )
        return JSONResponse(
            {"code": 21211, "message": f"Invalid request. {echoed}", "status": 400},
            status_code=400,
        )

    fake.server.handler = echo
    yield fake
    fake.stop()


def test_credentials_echoed_in_any_encoding_reach_no_output(
    tmp_path: Path, daemon_factory: Callable[..., Daemon], echoing_twilio: FakeTwilio
) -> None:
    root = tmp_path / "config"
    (root / "tenants").mkdir(parents=True)
    cfg = ConfigDir(root)
    cfg.write_daemon(default_daemon_settings(tmp_path / "h.db"))
    cfg.write_tenant(
        "acme",
        {
            "name": "Acme",
            "apiKeys": [ACME_KEY],
            "channels": {
                "sms": {
                    "provider": "twilio",
                    "baseUrl": echoing_twilio.url,
                    "credentials": {
                        "accountSid": ACCOUNT,
                        "authToken": TRICKY,
                        "phoneNumber": "+15005550006",
                    },
                }
            },
        },
    )
    daemon = daemon_factory(root).start()
    with daemon.client(ACME_KEY) as client:
        accepted = client.post("/messaging/send/sms", json={"to": "+34600111222", "body": "hola"})
        assert accepted.status_code == 202, accepted.text
        message_id = accepted.json()["id"]
        failed = wait_until(
            lambda: (
                (m := client.get(f"/messaging/messages/{message_id}").json())["status"] == "failed"
                and m
            )
        )
        logs = client.get("/messaging/logs/acme").text
    assert echoing_twilio.requests  # the provider did see (and echo) the credentials
    assert "Invalid request. Authorization: Basic " in failed["errorMessage"]
    outputs = {
        "errorMessage": failed["errorMessage"],
        "message": json.dumps(failed, ensure_ascii=False),
        "logs route": logs,
        "daemon log": daemon.output(),
    }
    leaks = {where: found for where, text in outputs.items() if (found := leaked(TRICKY, text))}
    assert leaks == {}


def test_a_fifo_or_a_huge_file_named_yaml_does_not_stall_the_daemon(
    config_dir: ConfigDir, daemon_factory: Callable[..., Daemon]
) -> None:
    daemon = daemon_factory(config_dir.path).start()
    tenants = config_dir.path / "tenants"
    os.mkfifo(tenants / "fifo.yaml")
    huge = {"name": "Huge " + "x" * 1_100_000, "apiKeys": ["huge-key-0001"], "channels": {}}
    config_dir.write_tenant("huge", huge)  # valid in every way but its size
    with daemon.client(ADMIN_KEY) as admin:

        def error_of(tenant: str) -> Any:
            response = admin.get(f"/messaging/config/{tenant}")  # the loop still answers
            return response.status_code == 200 and response.json().get("configError")

        fifo_error = wait_until(lambda: error_of("fifo"))
        huge_error = wait_until(lambda: error_of("huge"))
        assert "tenants/fifo.yaml: (root): not a regular file" in fifo_error["issues"]
        assert (
            "tenants/huge.yaml: (root): over 1,048,576 bytes, the limit for a config file"
            in huge_error["issues"]
        )
        assert admin.get("/readyz").status_code == 200
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_a_renamed_tenant_file_keeps_working(
    config_dir: ConfigDir, daemon_factory: Callable[..., Daemon]
) -> None:
    config_dir.write_tenant(
        "gamma",
        {
            "name": "Gamma",
            "apiKeys": ["gamma-key-0001"],
            "channels": {"sms": {"provider": "console"}},
        },
    )
    daemon = daemon_factory(config_dir.path).start()
    tenants = config_dir.path / "tenants"
    with daemon.client("gamma-key-0001") as gamma:
        assert gamma.get("/messaging/config/gamma").status_code == 200
        (tenants / "gamma.yaml").rename(tenants / "agamma.yaml")
        wait_until(lambda: gamma.get("/messaging/config/agamma").status_code == 200)
        assert "configError" not in gamma.get("/messaging/config/agamma").json()
