"""Meta's appSecret is optional (SPEC section 2, the seed's own client code leaves it out):
sends work without it, every webhook for that channel is refused and changes nothing, and
``check`` warns."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from tests.conftest import ADMIN_KEY, ConfigDir, auth
from tests.test_cli import run

GENDA_META = {
    "accessToken": "EAAG-genda-token",
    "phoneNumberId": "105511",
    "verifyToken": "vt-genda",
}


async def test_the_seeds_genda_config_without_app_secret_is_accepted_and_its_webhooks_refused(
    app_client_factory: Any, config_dir: ConfigDir
) -> None:
    async with app_client_factory() as (client, gateway):
        switched = await client.post(
            "/messaging/config/provider",
            headers=auth(ADMIN_KEY),
            json={
                "tenantId": "genda_456",
                "channel": "whatsapp",
                "provider": "meta",
                "credentials": GENDA_META,
                "isActive": True,
            },
        )
        assert switched.status_code == 201, switched.text
        # a status callback, signed with what an attacker would guess, for a message id
        body = json.dumps(
            {
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "changes": [
                            {
                                "field": "messages",
                                "value": {
                                    "metadata": {"phone_number_id": "105511"},
                                    "statuses": [{"id": "wamid.X", "status": "read"}],
                                },
                            }
                        ]
                    }
                ],
            }
        ).encode()
        guessed = hmac.new(b"", body, hashlib.sha256).hexdigest()
        refused = await client.post(
            "/messaging/webhook/whatsapp?tenant_id=genda_456&provider=meta",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": f"sha256={guessed}",
            },
        )
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "bad_signature"
        metrics = (await client.get("/metrics")).text
        assert (
            'pipecore_webhooks_total{provider="meta",result="bad_signature",tenant="genda_456"} 1.0'
            in metrics
        )
        page = await client.get("/messaging/logs/genda_456", headers=auth(ADMIN_KEY))
        assert page.json()["items"] == []
        assert gateway.registry.snapshot.tenant("genda_456") is not None


def test_check_warns_about_a_meta_channel_without_app_secret(tmp_path: Path) -> None:
    (tmp_path / "tenants").mkdir()
    (tmp_path / "pipecored.yaml").write_text("{}\n", encoding="utf-8")
    (tmp_path / "tenants" / "genda_456.yaml").write_text(
        "name: Genda\n"
        "channels:\n"
        "  whatsapp:\n"
        "    provider: meta\n"
        f"    credentials: {json.dumps(GENDA_META)}\n",
        encoding="utf-8",
    )
    result = run("check", "--config", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "tenants/genda_456.yaml: channels.whatsapp.credentials.appSecret: warning: no appSecret:"
        " messages are sent, but every webhook for this channel (delivery statuses, replies) is"
        " refused, since its signature cannot be checked",
        f"{tmp_path}: ok",
    ]
    assert "vt-genda" not in result.stdout and "EAAG" not in result.stdout
