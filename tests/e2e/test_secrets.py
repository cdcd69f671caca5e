"""No secret leaves the daemon: not in responses, logs, metrics, stored errors or `check`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
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
        # a 401 makes the provider unavailable to the tenant: the message waits and is tried
        # again (until maxAge), with the provider's error recorded
        message = wait_until(
            lambda: (
                (m := client.get(f"/messaging/messages/{message_id}").json())["errorMessage"] and m
            )
        )
        assert "invalid credentials" in message["errorMessage"]
        assert "invalid credentials" in message["attempts"][0]["errorMessage"]
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


LEAKY_TOKEN = "leaky-token-s3cr3t-9f8e7d6c5b4a"

# A third party's provider that puts its credential in its error text, unscrubbed: the daemon's
# own scrubbing is all that stands between the token and the attempt, the API and the logs.
LEAKY_PLUGIN = """
from pipecored import CredentialField, Provider, ProviderError, hookimpl


class LeakyProvider(Provider):
    name = "leaky"
    channels = frozenset({"sms"})
    credentials = (CredentialField("token", secret=True, description="the gateway's token"),)

    async def send(self, message, ctx):
        token = ctx.credentials["token"]
        raise ProviderError(
            f"gateway refused Authorization: Bearer {token} (token {token!r} is revoked)",
            retryable=False,
            provider=self.name,
            code="auth_refused",
            http_status=401,
        )


@hookimpl
def register_providers(register):
    register(LeakyProvider())
"""


def _install_leaky_plugin(site: Path) -> None:
    """What ``pip install`` leaves for pipecored to find: a module and its entry point."""
    site.mkdir()
    (site / "pipecored_leaky.py").write_text(LEAKY_PLUGIN, encoding="utf-8")
    dist = site / "pipecored_leaky-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: pipecored-leaky\nVersion: 1.0\n", encoding="utf-8"
    )
    (dist / "entry_points.txt").write_text(
        "[pipecored]\nleaky = pipecored_leaky\n", encoding="utf-8"
    )


def test_a_plugin_that_echoes_its_token_in_an_error_leaks_nothing(
    config_dir: ConfigDir, daemon_factory: Callable[..., Daemon], tmp_path: Path
) -> None:
    site = tmp_path / "leaky-site"
    _install_leaky_plugin(site)
    config_dir.write_tenant(
        "acme",
        {
            "name": "Acme",
            "apiKeys": [ACME],
            "channels": {"sms": {"provider": "leaky", "credentials": {"token": LEAKY_TOKEN}}},
        },
    )
    daemon = daemon_factory(config_dir.path)
    daemon.env["PYTHONPATH"] = os.pathsep.join([str(site), daemon.env["PYTHONPATH"]])
    daemon.start()
    outputs: list[str] = []
    with daemon.client(ACME) as client:
        sent = client.post("/messaging/send/sms", json={"to": "+34600111222", "body": "hola"})
        assert sent.status_code == 202, sent.text
        message_id = sent.json()["id"]
        message = wait_until(
            lambda: (
                (m := client.get(f"/messaging/messages/{message_id}").json())["status"] == "failed"
                and m
            )
        )
        # the plugin's error is recorded, with the token masked where it stood
        assert message["errorCode"] == "auth_refused"
        assert "gateway refused Authorization: Bearer ****" in message["errorMessage"]
        (attempt,) = message["attempts"]
        assert attempt["errorMessage"] == message["errorMessage"]
        outputs.append(json.dumps(message, ensure_ascii=False))
        outputs.append(client.get("/messaging/logs/acme").text)
        outputs.append(client.get("/metrics").text)
    assert daemon.stop() == 0
    outputs.append(daemon.output())
    everything = "\n".join(outputs)
    assert LEAKY_TOKEN not in everything
    assert "Bearer ****" in everything  # the error text did reach the outputs checked
