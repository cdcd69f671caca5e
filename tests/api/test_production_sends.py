"""What production traffic needs (SPEC section 7) through the API: templates from the tenant's
catalogue, scheduled sends and cancellation, quiet hours, and bad input refused with nothing
stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.api.conftest import ACME_KEY, accepted_id, assert_error, message, send, wait_status
from tests.conftest import ConfigDir, auth, httpjson_channel
from tests.fakes.httpjson import HttpJsonGateway

TEMPLATES = {
    "order_confirmation": {
        "es": {
            "text": "Hola {{1}}, tu pedido está confirmado para las {{2}}. 🍽️",
            "meta": {"name": "order_confirmation", "language": "es"},
        },
        "en": {"text": "Hi {{1}}, your order is confirmed for {{2}}."},
    },
    "meta_only": {"es": {"meta": {"name": "recordatorio", "language": "es"}}},
}


def _acme(config_dir: ConfigDir, fake: HttpJsonGateway, **extra: Any) -> None:
    config_dir.write_tenant(
        "acme",
        {
            "name": "Acme",
            "apiKeys": [ACME_KEY],
            "channels": {
                "sms": httpjson_channel(fake.url),
                "email": httpjson_channel(fake.url),
            },
            "templates": TEMPLATES,
            **extra,
        },
    )


def _in(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


async def _count_logs(client: httpx.AsyncClient) -> int:
    page = await client.get("/messaging/logs/acme?limit=500", headers=auth(ACME_KEY))
    return len(page.json()["items"])


# -- templates -----------------------------------------------------------------------------------


async def test_a_template_goes_as_its_text_to_a_provider_without_a_mapping(
    config_dir: ConfigDir, fake_gateway: HttpJsonGateway, app_client_factory: Any
) -> None:
    _acme(config_dir, fake_gateway)
    async with app_client_factory() as (client, _):
        body = {
            "to": "+34600111222",
            "template": {
                "name": "order_confirmation",
                "language": "es",
                "variables": {"1": "Ana", "2": "20:30"},
            },
        }
        message_id = await accepted_id(client, "sms", body=body)
        await wait_status(client, message_id, "sent")
    assert fake_gateway.sent[-1]["body"] == "Hola Ana, tu pedido está confirmado para las 20:30. 🍽️"


@pytest.mark.parametrize(
    ("template", "field"),
    [
        pytest.param({"name": "nonesuch"}, "template.name", id="unknown-template"),
        pytest.param(
            {"name": "order_confirmation", "language": "fr", "variables": {"1": "a", "2": "b"}},
            "template.language",
            id="unknown-language",
        ),
        pytest.param(
            {"name": "order_confirmation", "variables": {"1": "Ana"}},
            "template.variables",
            id="missing-variable",
        ),
        pytest.param({"name": "meta_only"}, "template.name", id="no-mapping-for-the-provider"),
    ],
)
async def test_a_template_that_cannot_be_sent_is_422_and_nothing_is_stored(
    config_dir: ConfigDir,
    fake_gateway: HttpJsonGateway,
    app_client_factory: Any,
    template: dict[str, Any],
    field: str,
) -> None:
    _acme(config_dir, fake_gateway)
    async with app_client_factory() as (client, _):
        response = await send(client, "sms", {"to": "+34600111222", "template": template})
        error = assert_error(response, 422, "validation_error", names=field)
        assert error["field"] == field
        assert await _count_logs(client) == 0


async def test_a_body_and_a_template_together_are_refused(client: httpx.AsyncClient) -> None:
    response = await send(
        client, "sms", {"to": "+34600111222", "body": "x", "template": {"name": "t"}}
    )
    assert_error(response, 422, "validation_error", names="body")


# -- scheduled sends -----------------------------------------------------------------------------


async def test_a_scheduled_send_waits_and_can_be_canceled(
    client: httpx.AsyncClient, fake_gateway: HttpJsonGateway
) -> None:
    at = _in(2)
    message_id = await accepted_id(
        client, "sms", body={"to": "+34600111222", "body": "x", "sendAt": at}
    )
    scheduled = await message(client, message_id)
    assert scheduled["status"] == "scheduled"
    goes_at = datetime.fromisoformat(scheduled["nextAttemptAt"])
    assert abs((goes_at - datetime.fromisoformat(at)).total_seconds()) < 0.001
    canceled = await client.post(f"/messaging/messages/{message_id}/cancel", headers=auth(ACME_KEY))
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    again = await client.post(f"/messaging/messages/{message_id}/cancel", headers=auth(ACME_KEY))
    assert_error(again, 409, "not_cancelable")
    assert fake_gateway.sent == []


async def test_a_sent_message_cannot_be_canceled(client: httpx.AsyncClient) -> None:
    message_id = await accepted_id(client, "sms")
    await wait_status(client, message_id, "sent")
    response = await client.post(f"/messaging/messages/{message_id}/cancel", headers=auth(ACME_KEY))
    assert_error(response, 409, "not_cancelable")


@pytest.mark.parametrize(
    "send_at",
    [
        pytest.param(_in(-1), id="past"),
        pytest.param(_in(36 * 24), id="beyond-35-days"),
        pytest.param("2026-12-01T10:00:00", id="without-an-offset"),
        pytest.param("mañana", id="not-a-time"),
    ],
)
async def test_a_bad_send_at_is_422_and_nothing_is_stored(
    client: httpx.AsyncClient, send_at: str
) -> None:
    response = await send(client, "sms", {"to": "+34600111222", "body": "x", "sendAt": send_at})
    assert_error(response, 422, "validation_error", names="sendAt")
    assert await _count_logs(client) == 0


async def test_media_on_email_is_refused(client: httpx.AsyncClient) -> None:
    body = {
        "to": "ana@example.com",
        "subject": "Menú",
        "htmlContent": "<p>Menú</p>",
        "media": [{"url": "https://example.com/menu.pdf"}],
    }
    assert_error(await send(client, "email", body), 422, "validation_error", names="media")


@pytest.mark.parametrize(
    ("attachment", "field"),
    [
        pytest.param({"filename": "a.pdf"}, "attachments.0", id="neither-content-nor-url"),
        pytest.param(
            {"filename": "a.pdf", "content": "%%%"}, "attachments.0.content", id="not-b64"
        ),
        pytest.param(
            {"filename": "../etc/passwd", "content": "QQ=="}, "attachments.0.filename", id="path"
        ),
    ],
)
async def test_a_bad_attachment_is_422(
    client: httpx.AsyncClient, attachment: dict[str, str], field: str
) -> None:
    body = {
        "to": "ana@example.com",
        "subject": "Factura",
        "htmlContent": "<p>Adjunta</p>",
        "attachments": [attachment],
    }
    error = assert_error(await send(client, "email", body), 422, "validation_error", names=field)
    assert error["field"] == field


# -- quiet hours ---------------------------------------------------------------------------------


async def test_quiet_hours_hold_a_message_until_their_end_unless_urgent(
    config_dir: ConfigDir, fake_gateway: HttpJsonGateway, app_client_factory: Any
) -> None:
    madrid = ZoneInfo("Europe/Madrid")
    now = datetime.now(madrid)
    start, end = (now - timedelta(hours=1)), (now + timedelta(hours=2))
    quiet = {
        "timezone": "Europe/Madrid",
        "start": start.strftime("%H:%M"),
        "end": end.strftime("%H:%M"),
        "channels": ["sms"],
    }
    _acme(config_dir, fake_gateway, quietHours=quiet)
    async with app_client_factory() as (client, _):
        held = await accepted_id(client, "sms")
        urgent = await accepted_id(
            client, "sms", body={"to": "+34600111222", "body": "¡Urgente!", "urgent": True}
        )
        await wait_status(client, urgent, "sent")
        record = await message(client, held)
        assert record["status"] == "queued"
        goes_at = datetime.fromisoformat(record["nextAttemptAt"]).astimezone(madrid)
        assert goes_at.strftime("%H:%M") == quiet["end"]
        assert goes_at > now
        # email is not covered by this tenant's window
        email = await accepted_id(client, "email")
        await wait_status(client, email, "sent")
    assert [m["id"] for m in fake_gateway.sent if m["id"] == held] == []
