"""A channel declared by a third-party plugin: the example httpjson plugin, installed from
outside the repository like any distribution, declares ``chat``; a tenant file configures it,
and a real daemon delivers a chat message end to end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import (
    ONE_TENANT_KEY,
    Daemon,
    one_tenant_config,
    wait_until,
)
from tests.fakes.httpjson import HttpJsonGateway

ACME = ONE_TENANT_KEY


def test_a_plugin_channel_is_configured_and_delivers_like_any_other(
    tmp_path: Path, daemon_factory: Callable[..., Daemon], fake_gateway: HttpJsonGateway
) -> None:
    cfg = one_tenant_config(tmp_path, fake_gateway.url, channel="chat")
    daemon = daemon_factory(cfg.path).start()
    with daemon.client(ACME) as client:
        sent = client.post(
            "/messaging/send/chat", json={"to": "#reservas", "body": "Mesa 4 lista 🍽️"}
        )
        assert sent.status_code == 202, sent.text
        assert sent.json()["channel"] == "chat"
        message_id = sent.json()["id"]
        wait_until(
            lambda: client.get(f"/messaging/messages/{message_id}").json()["status"] == "sent"
        )
        # the plugin's own address check guards the channel
        refused = client.post("/messaging/send/chat", json={"to": "+34600111222", "body": "x"})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["field"] == "to"
        assert "chat user" in refused.json()["error"]["message"]
        # the log filter and the document know the channel
        assert (
            client.get("/messaging/logs/acme?channel=chat").json()["items"][0]["id"] == message_id
        )
    document = httpx.get(f"{daemon.url}/openapi.json").json()
    assert "chat" in document["components"]["schemas"]["Accepted"]["properties"]["channel"]["enum"]
    assert "ChatSend" in document["components"]["schemas"]
    [request] = fake_gateway.sent
    assert request == {
        "id": message_id,
        "channel": "chat",
        "to": ["#reservas"],
        "from": None,
        "body": "Mesa 4 lista 🍽️",
    }
