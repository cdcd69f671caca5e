"""Keys written as hashes, `pipecored keys new`, per-tenant API rate limits, the local-only
webhook signature opt-out, and config paths that stay inside the config dir."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipecored.config.loader import check_config_dir
from pipecored.plugins import LoadedProviders
from tests.conftest import ADMIN_KEY, ConfigDir, auth, httpjson_channel
from tests.fakes.httpjson import HttpJsonGateway

ACME = "acme-key-0123456789"


def _hashed(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


async def test_a_key_written_as_its_hash_authenticates(
    config_dir: ConfigDir, fake_gateway: HttpJsonGateway, app_client_factory: Any
) -> None:
    config_dir.write_tenant(
        "acme",
        {
            "name": "Acme",
            "apiKeys": [_hashed("pck_only-the-client-knows-this")],
            "channels": {"sms": httpjson_channel(fake_gateway.url)},
        },
    )
    async with app_client_factory() as (client, _):
        ok = await client.get(
            "/messaging/config/acme", headers=auth("pck_only-the-client-knows-this")
        )
        assert ok.status_code == 200
        wrong = await client.get("/messaging/config/acme", headers=auth(_hashed("x")))
        assert wrong.status_code == 401


def test_a_key_and_its_hash_in_two_tenants_are_one_key(
    config_dir: ConfigDir, providers: LoadedProviders
) -> None:
    config_dir.write_tenant(
        "globex",
        {"name": "Globex", "apiKeys": [_hashed(ACME)], "channels": {}},
    )
    issues = [str(i) for i in check_config_dir(config_dir.path, providers=providers, env={})]
    assert (
        "tenants/globex.yaml: apiKeys.0: "
        "this key already belongs to another tenant or is an admin key" in issues
    )


def test_a_malformed_hash_is_a_config_error(
    config_dir: ConfigDir, providers: LoadedProviders
) -> None:
    config_dir.write_tenant("globex", {"name": "Globex", "apiKeys": ["sha256:abc"], "channels": {}})
    issues = [str(i) for i in check_config_dir(config_dir.path, providers=providers, env={})]
    assert any(
        i.startswith("tenants/globex.yaml: apiKeys.0: a hashed key is sha256:") for i in issues
    )


def test_keys_new_prints_a_fresh_key_and_the_line_for_the_file() -> None:
    outputs = [
        subprocess.run(
            [sys.executable, "-m", "pipecored", "keys", "new", "--tenant", "acme"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for _ in range(2)
    ]
    keys = [
        next(line.split()[1] for line in out.splitlines() if line.startswith("key:"))
        for out in outputs
    ]
    assert keys[0] != keys[1]
    assert keys[0].startswith("pck_") and len(keys[0]) >= 40
    assert _hashed(keys[0]) in outputs[0]
    assert "tenants/acme.yaml" in outputs[0]


async def test_a_tenant_over_its_api_rate_limit_gets_429_with_retry_after(
    config_dir: ConfigDir, fake_gateway: HttpJsonGateway, app_client_factory: Any
) -> None:
    config_dir.write_tenant(
        "acme",
        {
            "name": "Acme",
            "apiKeys": [ACME],
            "rateLimit": {"perSecond": 0.5, "burst": 3},
            "channels": {"sms": httpjson_channel(fake_gateway.url)},
        },
    )
    async with app_client_factory() as (client, _):
        codes = [
            (await client.get("/messaging/stats/acme", headers=auth(ACME))).status_code
            for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429]
        limited = await client.get("/messaging/stats/acme", headers=auth(ACME))
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
        # other tenants and admins are not limited by acme's traffic
        assert (
            await client.get("/messaging/stats/acme", headers=auth(ADMIN_KEY))
        ).status_code == 200


@pytest.mark.parametrize(("per_second", "wait"), [(0.1, 10), (0.25, 4)])
async def test_retry_after_on_the_api_429_is_the_real_wait_in_whole_seconds(
    config_dir: ConfigDir,
    fake_gateway: HttpJsonGateway,
    app_client_factory: Any,
    per_second: float,
    wait: int,
) -> None:
    config_dir.write_tenant(
        "acme",
        {
            "name": "Acme",
            "apiKeys": [ACME],
            "rateLimit": {"perSecond": per_second, "burst": 1},
            "channels": {"sms": httpjson_channel(fake_gateway.url)},
        },
    )
    async with app_client_factory() as (client, _):
        assert (await client.get("/messaging/stats/acme", headers=auth(ACME))).status_code == 200
        limited = await client.get("/messaging/stats/acme", headers=auth(ACME))
        assert limited.status_code == 429, limited.text
        # RFC 9110 section 10.2.3: delay-seconds, a non-negative integer. The bucket refills one
        # token every 1/perSecond seconds, less the moment between the two requests.
        value = limited.headers["Retry-After"]
        assert value.isdigit(), value
        assert wait - 1 <= int(value) <= wait, value


async def test_unsigned_callbacks_are_accepted_only_where_verification_was_turned_off(
    config_dir: ConfigDir,
    fake_gateway: HttpJsonGateway,
    app_client_factory: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config_dir.write_tenant(
        "acme",
        {
            "name": "Acme",
            "apiKeys": [ACME],
            "channels": {
                "sms": httpjson_channel(fake_gateway.url, verifyWebhookSignatures=False),
                "email": httpjson_channel(fake_gateway.url),
            },
        },
    )
    body = json.dumps({"events": [{"from": "+34600111222", "to": "+1555", "body": "hola"}]})
    async with app_client_factory() as (client, _):
        for channel, expected in (("sms", 200), ("email", 403)):
            r = await client.post(
                f"/messaging/webhook/{channel}?tenant_id=acme&provider=httpjson",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            assert r.status_code == expected, (channel, r.text)
    assert "config.webhook_signatures_not_verified" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("store", "ok"),
    [
        pytest.param("sqlite:///pipecored.db", True, id="inside"),
        pytest.param("sqlite:///data/pipecored.db", True, id="subdir"),
        pytest.param("sqlite:////var/lib/pipecored/pipecored.db", True, id="absolute-explicit"),
        pytest.param("sqlite:///../outside.db", False, id="escapes"),
        pytest.param("sqlite:///data/../../outside.db", False, id="escapes-later"),
        pytest.param("mysql://db/pipecored", False, id="unsupported"),
    ],
)
def test_relative_paths_stay_inside_the_config_dir(
    tmp_path: Path, providers: LoadedProviders, store: str, ok: bool
) -> None:
    (tmp_path / "pipecored.yaml").write_text(yaml.safe_dump({"store": store}))
    issues = check_config_dir(tmp_path, providers=providers, env={})
    assert (issues == []) is ok, issues
    if not ok:
        assert issues[0].path == "store"
