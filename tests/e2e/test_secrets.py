"""No secret leaves the daemon: not in responses, logs, metrics, stored errors or `check`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse

from tests.conftest import (
    ADMIN_KEY,
    HTTPJSON_SIGNING,
    HTTPJSON_TOKEN,
    ConfigDir,
    Daemon,
    httpjson_channel,
    wait_until,
)
from tests.fakes.httpjson import HttpJsonGateway, signed_events
from tests.fakes.server import RecordedRequest

ACME = "acme-key-0123456789"
GLOBEX = "globex-key-0123456789"
SECRETS = [ADMIN_KEY, ACME, GLOBEX, HTTPJSON_TOKEN, HTTPJSON_SIGNING]


def test_secrets_never_appear_in_any_output(
    config_dir: ConfigDir, daemon_factory: Callable[..., Daemon], fake_gateway: HttpJsonGateway
) -> None:
    outputs: list[str] = []

    def echo_credentials(request: RecordedRequest) -> JSONResponse:
        # A provider that echoes the credentials it was given in its error text.
        return JSONResponse(
            {"error": f"invalid credentials: {request.headers.get('authorization')}"},
            status_code=401,
        )

    daemon = daemon_factory(config_dir.path).start()
    with daemon.client(ACME) as client, daemon.client(ADMIN_KEY) as admin:
        fake_gateway.server.handler = echo_credentials
        failed = client.post("/messaging/send/sms", json={"to": "+34600111222", "body": "hola"})
        outputs.append(failed.text)
        message_id = failed.json()["id"]
        message = wait_until(
            lambda: (
                (m := client.get(f"/messaging/messages/{message_id}").json())["status"] == "failed"
                and m
            )
        )
        assert "invalid credentials" in message["errorMessage"]
        outputs.append(str(message))

        for path in (
            "/messaging/config/acme",
            "/messaging/logs/acme",
            "/messaging/stats/acme",
            f"/messaging/messages/{message_id}",
        ):
            outputs.append(client.get(path).text)
            outputs.append(admin.get(path).text)
        outputs.append(admin.get("/messaging/config/globex").text)

        # errors: a wrong key, another tenant's key, a bad body, a forged webhook
        outputs.append(client.get("/messaging/config/globex").text)
        with daemon.client("wrong-" + ACME) as stranger:
            outputs.append(stranger.get("/messaging/config/acme").text)
        outputs.append(client.post("/messaging/send/sms", json={"to": ACME}).text)
        body, headers = signed_events("not-" + HTTPJSON_SIGNING, [{"id": "x", "status": "sent"}])
        outputs.append(
            client.post(
                "/messaging/webhook/sms?tenant_id=acme&provider=httpjson",
                content=body,
                headers=headers,
            ).text
        )
        # a config write through the API, echoing the secrets back
        written = admin.post(
            "/messaging/config/provider",
            json={
                "tenantId": "acme",
                "channel": "email",
                "provider": "httpjson",
                "credentials": {
                    "token": HTTPJSON_TOKEN + "-new",
                    "signingSecret": HTTPJSON_SIGNING,
                },
                "isActive": True,
            },
        )
        assert written.status_code == 200, written.text
        outputs.append(written.text)

        # a reload with an invalid file that holds secrets next to its error
        broken: dict[str, Any] = {
            "name": "Globex",
            "apiKeys": [GLOBEX],
            "channels": {"whatsapp": httpjson_channel(fake_gateway.url, isActiv=True)},
        }
        config_dir.write_tenant("globex", broken)
        wait_until(lambda: "configError" in admin.get("/messaging/config/globex").json())
        outputs.append(admin.get("/messaging/config/globex").text)
        outputs.append(client.get("/metrics").text)

    assert daemon.stop() == 0
    outputs.append(daemon.output())
    check = subprocess.run(
        [sys.executable, "-m", "pipecored", "check", "--config", str(config_dir.path)],
        env=daemon.env,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 1
    outputs.extend([check.stdout, check.stderr])

    everything = "\n".join(outputs)
    for secret in [*SECRETS, HTTPJSON_TOKEN + "-new"]:
        assert secret not in everything, f"a secret leaked: {secret[:6]}..."
    # The file written by the API holds the new token, readable only by its owner.
    path = config_dir.path / "tenants" / "acme.yaml"
    assert path.stat().st_mode & 0o777 == 0o600
