"""The config API's write to a tenant file: an operator's edit made meanwhile is never reverted,
a problem in the file is named as the file's, a key another principal holds is never written in,
a tenant id is checked whole, and every write is logged with the caller's key identity."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import yaml
from prometheus_client import CollectorRegistry

from pipecored import Provider
from pipecored.api.app import create_app
from pipecored.config.registry import key_digest, key_identity
from pipecored.config.writer import UneditableTenantFile, update_channel
from pipecored.errors import ConfigChanged, ConfigError, TenantConfigInvalid
from pipecored.gateway import Gateway
from tests.config.conftest import ProbeProvider
from tests.conftest import ADMIN_KEY, ConfigDir, auth, default_daemon_settings

ACME_FILE = "name: Acme\napiKeys: [acme-key-w]\nchannels:\n  sms: {provider: console}\n"
OPERATOR_EDIT = "# the operator's edit\nname: Acme (edited by hand)\napiKeys: [acme-key-w]\n"


@pytest.fixture
def cfg(tmp_path: Path) -> ConfigDir:
    root = tmp_path / "config"
    (root / "tenants").mkdir(parents=True)
    config = ConfigDir(root)
    config.write_daemon(default_daemon_settings(tmp_path / "w.db"))
    config.write_tenant("acme", "# kept comment\n" + ACME_FILE)
    return config


def write(
    cfg: ConfigDir, providers: dict[str, Provider], tenant_id: str = "acme", **kw: Any
) -> Any:
    return update_channel(
        cfg.path,
        tenant_id,
        "sms",
        provider=kw.pop("provider", "probe"),
        credentials=kw.pop("credentials", {}),
        is_active=True,
        providers=providers,
        env={},
        **kw,
    )


def test_an_operator_edit_made_during_the_write_is_kept(
    cfg: ConfigDir, all_providers: dict[str, Provider], probe: type[ProbeProvider]
) -> None:
    path = cfg.path / "tenants" / "acme.yaml"
    probe.during_check.append(lambda: path.write_text(OPERATOR_EDIT, encoding="utf-8"))

    with pytest.raises(ConfigChanged) as changed:
        write(cfg, all_providers)

    assert changed.value.status == 409 and changed.value.code == "config_changed"
    assert "tenants/acme.yaml" in changed.value.message
    assert path.read_text(encoding="utf-8") == OPERATOR_EDIT
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_file_created_during_the_write_is_kept(
    cfg: ConfigDir, all_providers: dict[str, Provider], probe: type[ProbeProvider]
) -> None:
    path = cfg.path / "tenants" / "initech.yaml"
    probe.during_check.append(lambda: path.write_text(OPERATOR_EDIT, encoding="utf-8"))
    with pytest.raises(ConfigChanged):
        write(cfg, all_providers, "initech")
    assert path.read_text(encoding="utf-8") == OPERATOR_EDIT


def test_a_file_deleted_during_the_write_stays_deleted(
    cfg: ConfigDir, all_providers: dict[str, Provider], probe: type[ProbeProvider]
) -> None:
    path = cfg.path / "tenants" / "acme.yaml"
    probe.during_check.append(path.unlink)
    with pytest.raises(ConfigChanged):
        write(cfg, all_providers)
    assert not path.exists()


def test_an_unchanged_file_is_written_keeping_its_comments(
    cfg: ConfigDir, all_providers: dict[str, Provider]
) -> None:
    tenant, created = write(cfg, all_providers)
    text = (cfg.path / "tenants" / "acme.yaml").read_text(encoding="utf-8")
    assert not created and tenant.channels["sms"].provider == "probe"
    assert text.startswith("# kept comment\n")
    assert os.stat(cfg.path / "tenants" / "acme.yaml").st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("text", "names"),
    [
        pytest.param(
            "name: Acme\napiKeys: [acme-key-w]\ncolour: red\nchannels: {}\n",
            "tenants/acme.yaml: colour: unknown key",
            id="unknown-key-elsewhere",
        ),
        pytest.param(
            "name: ''\napiKeys: [acme-key-w]\nchannels: {}\n",
            "tenants/acme.yaml: name:",
            id="bad-value-elsewhere",
        ),
        pytest.param(
            "name: Acme\nchannels:\n  email: {provider: twilio}\n",
            "tenants/acme.yaml: channels.email.provider",
            id="another-channel",
        ),
        pytest.param(
            "name: Acme\nchannels:\n  sms:\n    provider: console\n"
            "    fallbacks: [{provider: pigeon}]\n",
            "tenants/acme.yaml: channels.sms.fallbacks.0.provider",
            id="a-fallback-of-the-channel",
        ),
    ],
)
def test_a_problem_the_request_does_not_touch_is_the_files(
    cfg: ConfigDir, all_providers: dict[str, Provider], text: str, names: str
) -> None:
    path = cfg.write_tenant("acme", text)
    with pytest.raises(TenantConfigInvalid) as refused:
        write(cfg, all_providers, provider="console")
    assert refused.value.status == 409 and refused.value.code == "tenant_config_invalid"
    assert names in refused.value.message and "by hand" in refused.value.message
    assert path.read_text(encoding="utf-8") == text


def test_a_problem_with_what_the_request_sets_is_the_requests(
    cfg: ConfigDir, all_providers: dict[str, Provider]
) -> None:
    # a broken file and a request missing a credential: the request's issue is the answer
    cfg.write_tenant("acme", "name: Acme\ncolour: red\nchannels: {}\n")
    with pytest.raises(ConfigError) as refused:
        write(cfg, all_providers, provider="twilio", credentials={"accountSid": "AC1"})
    assert [i.path for i in refused.value.issues] == [
        "channels.sms.credentials.authToken",
        "channels.sms.credentials.phoneNumber",
    ]


def test_a_key_another_principal_holds_is_never_written(
    cfg: ConfigDir, all_providers: dict[str, Provider]
) -> None:
    path = cfg.write_tenant("acme", "name: Acme\napiKeys: [globex-key-w]\nchannels: {}\n")
    before = path.read_text(encoding="utf-8")
    with pytest.raises(TenantConfigInvalid) as refused:
        write(cfg, all_providers, provider="console", taken_keys={key_digest("globex-key-w")})
    assert "tenants/acme.yaml: apiKeys.0" in refused.value.message
    assert path.read_text(encoding="utf-8") == before


@pytest.mark.parametrize("kind", ["fifo", "oversized"])
def test_a_file_that_is_not_a_small_regular_file_is_left_alone(
    cfg: ConfigDir, all_providers: dict[str, Provider], kind: str
) -> None:
    path = cfg.path / "tenants" / "initech.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_text("name: " + "x" * 2_000_000 + "\n", encoding="utf-8")
    with pytest.raises(UneditableTenantFile) as refused:
        write(cfg, all_providers, "initech", provider="console")
    assert "by hand" in refused.value.issues[0].message
    assert path.is_fifo() if kind == "fifo" else path.stat().st_size > 2_000_000


@pytest.mark.parametrize("tenant_id", ["acme2\n", "acme\n", "\nacme", "acme\r", "acme/../x"])
def test_a_tenant_id_is_checked_whole(
    cfg: ConfigDir, all_providers: dict[str, Provider], tenant_id: str
) -> None:
    with pytest.raises(ConfigError):
        write(cfg, all_providers, tenant_id, provider="console")
    assert sorted(p.name for p in (cfg.path / "tenants").iterdir()) == ["acme.yaml"]


def test_each_write_is_logged_with_the_callers_key_identity(
    cfg: ConfigDir, all_providers: dict[str, Provider]
) -> None:
    identity = key_identity(key_digest(ADMIN_KEY))
    with structlog.testing.capture_logs() as logs:
        write(cfg, all_providers, provider="console", actor=identity)
    (line,) = [e for e in logs if e["event"] == "config.tenant_written"]
    assert line["by"] == identity and line["tenant"] == "acme"
    assert ADMIN_KEY not in str(line)


# -- through the API ---------------------------------------------------------------------------


@pytest.fixture
async def api(
    cfg: ConfigDir, all_providers: dict[str, Provider]
) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway]]:
    gateway = Gateway(cfg.path, all_providers, metrics_registry=CollectorRegistry(), watch=False)  # type: ignore[arg-type]
    gateway.load()
    await gateway.start()
    try:
        transport = httpx.ASGITransport(app=create_app(gateway), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://pipecored") as client:
            yield client, gateway
    finally:
        await gateway.stop()


async def test_the_api_answers_409_instead_of_reverting_an_edit(
    api: tuple[httpx.AsyncClient, Gateway], cfg: ConfigDir, probe: type[ProbeProvider]
) -> None:
    client, gateway = api
    path = cfg.path / "tenants" / "acme.yaml"
    probe.during_check.append(lambda: path.write_text(OPERATOR_EDIT, encoding="utf-8"))
    response = await client.post(
        "/messaging/config/provider",
        json={"tenantId": "acme", "channel": "sms", "provider": "probe", "credentials": {}},
        headers=auth(ADMIN_KEY),
    )
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "config_changed"
    assert path.read_text(encoding="utf-8") == OPERATOR_EDIT
    tenant = gateway.registry.snapshot.tenant("acme")
    assert tenant is not None and tenant.channels["sms"].provider == "console"


async def test_the_api_names_the_files_problem_as_the_files(
    api: tuple[httpx.AsyncClient, Gateway], cfg: ConfigDir
) -> None:
    client, gateway = api
    cfg.write_tenant("acme", "name: Acme\napiKeys: [acme-key-w]\ncolour: red\nchannels: {}\n")
    gateway.registry.reload_tenant("acme")
    response = await client.post(
        "/messaging/config/provider",
        json={"tenantId": "acme", "channel": "sms", "provider": "console", "credentials": {}},
        headers=auth(ADMIN_KEY),
    )
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "tenant_config_invalid"
    assert "tenants/acme.yaml: colour" in error["message"]


async def test_a_tenant_id_with_a_newline_creates_no_file(
    api: tuple[httpx.AsyncClient, Gateway], cfg: ConfigDir
) -> None:
    client, _ = api
    response = await client.post(
        "/messaging/config/provider",
        json={"tenantId": "initech\n", "channel": "sms", "provider": "console", "credentials": {}},
        headers=auth(ADMIN_KEY),
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "tenantId"
    assert sorted(p.name for p in (cfg.path / "tenants").iterdir()) == ["acme.yaml"]
    assert yaml.safe_load((cfg.path / "tenants" / "acme.yaml").read_text())["name"] == "Acme"
