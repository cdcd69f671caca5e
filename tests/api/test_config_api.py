"""POST /messaging/config/provider and GET /messaging/config/{tenant}."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from pipecored.gateway import Gateway
from tests.api.conftest import ACME_KEY, SMS, accepted_id, assert_error, send, wait_status
from tests.conftest import ADMIN_KEY, HTTPJSON_SIGNING, HTTPJSON_TOKEN, auth
from tests.fakes.httpjson import HttpJsonGateway

TWILIO_TOKEN = "tw-auth-token-s3cr3t-abcdef"


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def tenant_file(gateway: Gateway, tenant_id: str) -> Path:
    return gateway.config_dir / "tenants" / f"{tenant_id}.yaml"


async def set_provider(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/messaging/config/provider", json=body, headers=auth(ADMIN_KEY))


def httpjson_body(**extra: Any) -> dict[str, Any]:
    return {
        "tenantId": "acme",
        "channel": "sms",
        "provider": "httpjson",
        "credentials": {"token": HTTPJSON_TOKEN, "signingSecret": HTTPJSON_SIGNING},
        "isActive": True,
        **extra,
    }


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "names"),
    [
        pytest.param(httpjson_body(provider="pigeon"), "provider", "pigeon", id="unknown-provider"),
        pytest.param(
            httpjson_body(provider="resend", credentials={"apiKey": "re_1", "fromEmail": "a@b.c"}),
            "provider",
            "resend",
            id="provider-does-not-serve-channel",
        ),
        pytest.param(
            httpjson_body(credentials={"signingSecret": "x"}),
            "credentials.token",
            "credentials.token",
            id="missing-token",
        ),
        pytest.param(
            httpjson_body(credentials={}),
            "credentials.token",
            "credentials.token",
            id="no-credentials",
        ),
        pytest.param(
            {k: v for k, v in httpjson_body().items() if k != "credentials"},
            "credentials.token",
            "credentials.token",
            id="credentials-omitted",
        ),
        pytest.param(
            httpjson_body(
                provider="twilio", credentials={"accountSid": "AC1", "authToken": TWILIO_TOKEN}
            ),
            "credentials.phoneNumber",
            "credentials.phoneNumber",
            id="twilio-sms-needs-phoneNumber",
        ),
        pytest.param(
            httpjson_body(credentials={"token": "t", "pin": "1234"}),
            "credentials.pin",
            "credentials.pin",
            id="unknown-credential",
        ),
        pytest.param(httpjson_body(channel="fax"), "channel", "channel", id="bad-channel"),
        pytest.param(
            {k: v for k, v in httpjson_body().items() if k != "channel"},
            "channel",
            "channel",
            id="missing-channel",
        ),
        pytest.param(
            {k: v for k, v in httpjson_body().items() if k != "provider"},
            "provider",
            "provider",
            id="missing-provider",
        ),
        pytest.param(
            {k: v for k, v in httpjson_body().items() if k != "tenantId"},
            "tenantId",
            "tenantId",
            id="missing-tenantId",
        ),
        pytest.param(httpjson_body(tenantId="../etc"), "tenantId", "tenantId", id="bad-tenant-id"),
        pytest.param(httpjson_body(tenantId="ACME"), "tenantId", "tenantId", id="upper-tenant-id"),
        pytest.param(httpjson_body(baseURL="http://x"), "baseURL", "baseURL", id="unknown-field"),
    ],
)
async def test_invalid_provider_config_is_422_naming_it(
    client: httpx.AsyncClient, gateway: Gateway, body: dict[str, Any], field: str, names: str
) -> None:
    before = tenant_file(gateway, "acme").read_text()

    response = await client.post("/messaging/config/provider", json=body, headers=auth(ADMIN_KEY))

    error = assert_error(response, 422, "validation_error", names=names)
    assert error["field"] == field
    assert tenant_file(gateway, "acme").read_text() == before
    assert not (gateway.config_dir.parent / "etc.yaml").exists()


async def test_tenant_key_may_not_change_configuration(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    before = tenant_file(gateway, "acme").read_text()
    response = await client.post(
        "/messaging/config/provider", json=httpjson_body(), headers=auth(ACME_KEY)
    )
    assert_error(response, 403, "admin_required")
    assert tenant_file(gateway, "acme").read_text() == before


# -- writing the file --------------------------------------------------------------------------


async def test_switch_provider_takes_effect_for_the_next_send(
    client: httpx.AsyncClient, gateway: Gateway, fake_gateway: HttpJsonGateway
) -> None:
    response = await set_provider(
        client, tenantId="acme", channel="sms", provider="console", isActive=True
    )

    assert response.status_code == 200, response.text
    assert response.json()["channels"]["sms"]["provider"] == "console"
    message_id = await accepted_id(client, "sms")
    sent = await wait_status(client, message_id, "sent", "delivered")
    assert sent["provider"] == "console"
    assert fake_gateway.sent == []
    on_disk = yaml.safe_load(tenant_file(gateway, "acme").read_text())
    assert on_disk["channels"]["sms"] == {
        "provider": "console",
        "credentials": {},
        "isActive": True,
    }
    assert "baseUrl" not in on_disk["channels"]["sms"]  # it belonged to httpjson
    assert on_disk["channels"]["email"]["provider"] == "httpjson"  # other channels untouched


async def test_written_atomically_with_mode_0600(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    path = tenant_file(gateway, "acme")
    path.chmod(0o644)

    response = await set_provider(client, **httpjson_body(isActive=False))

    assert response.status_code == 200, response.text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    # what was written is what a restart reads
    entry = gateway.registry.reload_tenant("acme")
    assert entry is not None and entry.error is None
    assert entry.config is not None and entry.config.channels["sms"].is_active is False
    assert_error(await send(client, "sms", SMS), 409, "channel_inactive")


async def test_unknown_tenant_is_created_and_usable(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    response = await set_provider(
        client, tenantId="initech", channel="sms", provider="console", isActive=True
    )

    assert response.status_code == 201, response.text
    assert response.json()["tenantId"] == "initech"
    path = tenant_file(gateway, "initech")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert yaml.safe_load(path.read_text())["channels"]["sms"]["provider"] == "console"
    sent = await send(client, "sms", {**SMS, "tenant_id": "initech"}, key=ADMIN_KEY)
    assert sent.status_code == 202, sent.text
    await wait_status(client, sent.json()["id"], "sent", "delivered")
    # a second call on the now existing tenant is an update
    again = await set_provider(
        client, tenantId="initech", channel="email", provider="console", isActive=True
    )
    assert again.status_code == 200, again.text
    assert set(again.json()["channels"]) == {"sms", "email"}
    entry = gateway.registry.reload_tenant("initech")
    assert entry is not None and entry.error is None


ACME_WITH_COMMENTS = """\
# Acme's messaging. Owner: ops@acme.example
name: Acme
apiKeys: ["acme-key-0123456789"]
channels:
  sms:
    provider: httpjson   # our in-house gateway
    baseUrl: {url}
    credentials:
      token: ${{ACME_HJ_TOKEN}}
      signingSecret: "{signing}"
  email:
    # email goes through the same gateway
    provider: httpjson
    baseUrl: {url}
    credentials: {{token: "${{ACME_HJ_TOKEN}}"}}
"""


@pytest.fixture
def acme_with_env(
    gateway: Gateway, fake_gateway: HttpJsonGateway, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("ACME_HJ_TOKEN", HTTPJSON_TOKEN)
    path = tenant_file(gateway, "acme")
    path.write_text(ACME_WITH_COMMENTS.format(url=fake_gateway.url, signing=HTTPJSON_SIGNING))
    entry = gateway.registry.reload_tenant("acme")
    assert entry is not None and entry.error is None, entry
    return path


async def test_env_references_and_comments_survive(
    client: httpx.AsyncClient, acme_with_env: Path, fake_gateway: HttpJsonGateway
) -> None:
    response = await set_provider(client, **httpjson_body())

    assert response.status_code == 200, response.text
    text = read_text(acme_with_env)
    assert "token: ${ACME_HJ_TOKEN}" in text
    assert HTTPJSON_TOKEN not in text
    assert "# Acme's messaging. Owner: ops@acme.example" in text
    assert "# our in-house gateway" in text
    assert "# email goes through the same gateway" in text
    message_id = await accepted_id(client, "sms")
    await wait_status(client, message_id, "sent")
    assert fake_gateway.server.requests[-1].headers["authorization"] == f"Bearer {HTTPJSON_TOKEN}"


async def test_a_new_value_replaces_an_env_reference(
    client: httpx.AsyncClient, acme_with_env: Path, fake_gateway: HttpJsonGateway
) -> None:
    credentials = {"token": "a-brand-new-token-0123", "signingSecret": HTTPJSON_SIGNING}

    response = await set_provider(client, **httpjson_body(credentials=credentials))

    assert response.status_code == 200, response.text
    on_disk = yaml.safe_load(read_text(acme_with_env))
    assert on_disk["channels"]["sms"]["credentials"]["token"] == "a-brand-new-token-0123"
    assert on_disk["channels"]["email"]["credentials"]["token"] == "${ACME_HJ_TOKEN}"
    message_id = await accepted_id(client, "sms")
    await wait_status(client, message_id, "sent")
    assert fake_gateway.server.requests[-1].headers["authorization"] == (
        "Bearer a-brand-new-token-0123"
    )


async def test_masked_values_from_get_keep_the_stored_secrets(
    client: httpx.AsyncClient, gateway: Gateway, fake_gateway: HttpJsonGateway
) -> None:
    shown = (await client.get("/messaging/config/acme", headers=auth(ADMIN_KEY))).json()
    sms = shown["channels"]["sms"]
    assert sms["credentials"]["token"].startswith("****")

    response = await set_provider(
        client,
        tenantId="acme",
        channel="sms",
        provider=sms["provider"],
        credentials=sms["credentials"],
        isActive=sms["isActive"],
    )

    assert response.status_code == 200, response.text
    credentials = yaml.safe_load(tenant_file(gateway, "acme").read_text())["channels"]["sms"]
    assert credentials["credentials"] == {
        "token": HTTPJSON_TOKEN,
        "signingSecret": HTTPJSON_SIGNING,
    }
    assert credentials["baseUrl"] == fake_gateway.url  # same provider: its base URL stays
    message_id = await accepted_id(client, "sms")
    await wait_status(client, message_id, "sent")
    assert fake_gateway.server.requests[-1].headers["authorization"] == f"Bearer {HTTPJSON_TOKEN}"


async def test_a_masked_value_for_a_new_provider_is_422(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    # "****6789" only stands for the stored secret of the same provider and credential; with
    # none it would be written to the file as the Auth Token itself.
    before = tenant_file(gateway, "acme").read_text()
    body = {
        "tenantId": "acme",
        "channel": "sms",
        "provider": "twilio",
        "credentials": {"accountSid": "AC1", "authToken": "****6789", "phoneNumber": "+3460011"},
    }

    response = await set_provider(client, **body)

    error = assert_error(response, 422, "validation_error", names="credentials.authToken")
    assert error["field"] == "credentials.authToken"
    assert tenant_file(gateway, "acme").read_text() == before


# -- reading -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", [pytest.param(ACME_KEY, id="tenant-key"), pytest.param(ADMIN_KEY, id="admin-key")]
)
async def test_get_config_masks_every_secret(
    client: httpx.AsyncClient, gateway: Gateway, key: str
) -> None:
    tenant_file(gateway, "acme").write_text(
        yaml.safe_dump(
            {
                "name": "Acme",
                "apiKeys": [ACME_KEY],
                "channels": {
                    "sms": {
                        "provider": "twilio",
                        "credentials": {
                            "accountSid": "AC_acme_sid",
                            "authToken": TWILIO_TOKEN,
                            "phoneNumber": "+14155550123",
                        },
                        "fallbacks": [
                            {
                                "provider": "httpjson",
                                "credentials": {
                                    "token": HTTPJSON_TOKEN,
                                    "signingSecret": HTTPJSON_SIGNING,
                                },
                            }
                        ],
                    },
                    "email": {
                        "provider": "resend",
                        "credentials": {
                            "apiKey": "re_acme_resend_key_0123456",
                            "fromEmail": "noreply@acme.example",
                            "webhookSecret": "whsec_short",
                        },
                    },
                },
            }
        )
    )
    entry = gateway.registry.reload_tenant("acme")
    assert entry is not None and entry.error is None, entry

    response = await client.get("/messaging/config/acme", headers=auth(key))

    assert response.status_code == 200, response.text
    for secret in (
        TWILIO_TOKEN,
        HTTPJSON_TOKEN,
        HTTPJSON_SIGNING,
        "re_acme_resend_key_0123456",
        "whsec_short",
        ACME_KEY,
    ):
        assert secret not in response.text
    view = response.json()
    assert view["tenantId"] == "acme"
    assert view["name"] == "Acme"
    sms = view["channels"]["sms"]
    assert sms["provider"] == "twilio"
    assert sms["isActive"] is True
    assert sms["credentials"] == {
        "accountSid": "AC_acme_sid",
        "authToken": "****cdef",
        "phoneNumber": "+14155550123",
    }
    assert sms["fallbacks"] == [
        {"provider": "httpjson", "credentials": {"token": "****6789", "signingSecret": "****6789"}}
    ]
    assert view["channels"]["email"]["credentials"]["webhookSecret"] == "****"
    assert view["channels"]["email"]["credentials"]["fromEmail"] == "noreply@acme.example"
    assert "configError" not in view


async def test_set_provider_response_masks_secrets(client: httpx.AsyncClient) -> None:
    response = await set_provider(client, **httpjson_body())
    assert response.status_code == 200, response.text
    assert HTTPJSON_TOKEN not in response.text
    assert HTTPJSON_SIGNING not in response.text


async def test_broken_file_shows_config_error_and_keeps_the_last_good(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    tenant_file(gateway, "acme").write_text("name: Acme\nchannels:\n  sms: {provider: [\n")
    gateway.registry.reload_tenant("acme")

    response = await client.get("/messaging/config/acme", headers=auth(ACME_KEY))

    assert response.status_code == 200, response.text
    view = response.json()
    assert set(view["channels"]) == {"sms", "email", "whatsapp"}  # the last good version
    assert "last good" in view["configError"]["message"]
    [issue] = view["configError"]["issues"]
    assert issue.startswith("tenants/acme.yaml: ")
    assert HTTPJSON_TOKEN not in response.text
    # and it still sends with the last good configuration
    assert (await send(client, "sms", SMS)).status_code == 202


async def test_a_tenant_that_never_loaded_shows_its_config_error(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    tenant_file(gateway, "initech").write_text(
        "name: Initech\nchannels:\n  sms: {provider: httpjson, credentials: {tokn: x}}\n"
    )
    gateway.registry.reload_tenant("initech")

    response = await client.get("/messaging/config/initech", headers=auth(ADMIN_KEY))

    assert response.status_code == 200, response.text
    view = response.json()
    assert view == {
        "tenantId": "initech",
        "name": None,
        "channels": {},
        "configError": view["configError"],
    }
    issues = "\n".join(view["configError"]["issues"])
    assert "channels.sms.credentials.token" in issues
    assert "channels.sms.credentials.tokn" in issues


async def test_config_of_unknown_tenant_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/messaging/config/initech", headers=auth(ADMIN_KEY))
    assert_error(response, 404, "tenant_not_found")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("name: [unclosed\n", id="not-yaml"),
        pytest.param("- a list\n- not a mapping\n", id="not-a-mapping"),
    ],
)
async def test_a_file_that_cannot_be_edited_is_409_and_left_alone(
    client: httpx.AsyncClient, gateway: Gateway, text: str
) -> None:
    # Rewriting it would throw away whatever the operator wrote; they must fix it by hand.
    path = tenant_file(gateway, "initech")
    path.write_text(text)
    gateway.registry.reload_tenant("initech")

    response = await set_provider(
        client, tenantId="initech", channel="sms", provider="console", isActive=True
    )

    assert_error(response, 409, "tenant_config_invalid", names="by hand")
    assert path.read_text() == text


async def test_an_empty_file_is_filled_in(client: httpx.AsyncClient, gateway: Gateway) -> None:
    path = tenant_file(gateway, "initech")
    path.write_text("")
    gateway.registry.reload_tenant("initech")

    response = await set_provider(
        client, tenantId="initech", channel="sms", provider="console", isActive=True
    )

    assert response.status_code == 200, response.text
    assert yaml.safe_load(path.read_text())["channels"]["sms"]["provider"] == "console"


async def test_environment_references_cannot_be_written_through_the_api(
    app_client: tuple[httpx.AsyncClient, Gateway],
) -> None:
    client, gateway = app_client
    path = gateway.config_dir / "tenants" / "acme.yaml"
    before = path.read_text(encoding="utf-8")
    r = await client.post(
        "/messaging/config/provider",
        json={
            "tenantId": "acme",
            "channel": "sms",
            "provider": "httpjson",
            "credentials": {"token": "${HOME}", "signingSecret": "s3cr3t-0123456789"},
        },
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "credentials.token"
    assert path.read_text(encoding="utf-8") == before
