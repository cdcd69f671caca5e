"""POST /messaging/send/{channel}: bodies, validation, errors, idempotency, durability."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipecored.gateway import Gateway
from tests.api.conftest import (
    ACME_KEY,
    EMAIL,
    GLOBEX_KEY,
    SMS,
    WHATSAPP,
    accepted_id,
    assert_error,
    send,
    wait_status,
)
from tests.conftest import ADMIN_KEY, auth, eventually
from tests.fakes.httpjson import HttpJsonGateway

MiB = 1024 * 1024


def assert_field_error(response: httpx.Response, field: str) -> None:
    error = assert_error(response, 422, "validation_error", names=field)
    assert error["field"] == field, error


# -- each channel ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "key", "body", "tenant"),
    [
        pytest.param("sms", ACME_KEY, SMS, "acme", id="sms"),
        pytest.param("email", ACME_KEY, EMAIL, "acme", id="email"),
        pytest.param("whatsapp", GLOBEX_KEY, WHATSAPP, "globex", id="whatsapp"),
        pytest.param(
            "whatsapp",
            GLOBEX_KEY,
            {**WHATSAPP, "to": "whatsapp:+34600111222"},
            "globex",
            id="whatsapp-twilio-style-to",
        ),
    ],
)
async def test_each_channel_is_accepted_and_delivered(
    client: httpx.AsyncClient,
    fake_gateway: HttpJsonGateway,
    channel: str,
    key: str,
    body: dict[str, Any],
    tenant: str,
) -> None:
    response = await send(client, channel, body, key=key)

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted == {
        "id": accepted["id"],
        "status": "queued",
        "tenantId": tenant,
        "channel": channel,
    }
    assert "Idempotent-Replayed" not in response.headers
    await wait_status(client, accepted["id"], "sent")
    [delivered] = fake_gateway.sent
    assert delivered["id"] == accepted["id"]
    assert delivered["channel"] == channel


@pytest.mark.parametrize(
    ("body", "key"),
    [
        pytest.param({**SMS, "tenant_id": "acme"}, ACME_KEY, id="tenant_id"),
        pytest.param({**SMS, "tenantId": "acme"}, ACME_KEY, id="tenantId"),
        pytest.param({**SMS, "tenant_id": "acme", "tenantId": "acme"}, ACME_KEY, id="both-equal"),
        pytest.param(SMS, ACME_KEY, id="omitted-with-tenant-key"),
        pytest.param({**SMS, "tenant_id": "acme"}, ADMIN_KEY, id="admin-tenant_id"),
        pytest.param({**SMS, "tenantId": "acme"}, ADMIN_KEY, id="admin-tenantId"),
    ],
)
async def test_tenant_id_aliases(client: httpx.AsyncClient, body: dict[str, Any], key: str) -> None:
    response = await send(client, "sms", body, key=key)

    assert response.status_code == 202, response.text
    assert response.json()["tenantId"] == "acme"


@pytest.mark.parametrize(
    ("body", "key"),
    [
        pytest.param({**SMS, "tenant_id": "acme", "tenantId": "globex"}, ADMIN_KEY, id="differ"),
        pytest.param(SMS, ADMIN_KEY, id="omitted-with-admin-key"),
        pytest.param({**SMS, "tenant_id": ""}, ACME_KEY, id="empty"),
        pytest.param({**SMS, "tenant_id": 7}, ACME_KEY, id="number"),
        pytest.param({**SMS, "tenantId": ["acme"]}, ADMIN_KEY, id="list"),
    ],
)
async def test_tenant_id_invalid(client: httpx.AsyncClient, body: dict[str, Any], key: str) -> None:
    assert_field_error(await send(client, "sms", body, key=key), "tenant_id")


async def test_tenant_key_naming_another_tenant_is_forbidden(client: httpx.AsyncClient) -> None:
    response = await send(client, "whatsapp", {**WHATSAPP, "tenant_id": "globex"}, key=ACME_KEY)
    assert_error(response, 403, "tenant_forbidden")


# -- field validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "to",
    [
        pytest.param("+34600111222", id="spain"),
        pytest.param("+14155238886", id="us"),
        # the longest and shortest forms E.164 has: a German number, a Falklands one
        pytest.param("+491521234567890", id="15-digits"),
        pytest.param("+50012345", id="8-digits"),
    ],
)
async def test_e164_accepted(client: httpx.AsyncClient, to: str) -> None:
    response = await send(client, "sms", {"to": to, "body": "x"})
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    "to",
    [
        pytest.param("34600111222", id="no-plus"),
        pytest.param("+034600111222", id="leading-zero"),
        pytest.param("+1234567", id="too-short"),
        pytest.param("+1234567890123456", id="too-long"),
        pytest.param("+34 600 111 222", id="spaces"),
        # well-formed, but no number anyone can dial (the providers would refuse it later)
        pytest.param("+999123456789", id="no-such-country-code"),
        pytest.param("+3460011122", id="spanish-mobile-one-digit-short"),
        pytest.param("+12345678", id="us-number-too-short"),
        pytest.param("+34-600-111-222", id="dashes"),
        pytest.param("+34600111222\n", id="trailing-newline"),
        pytest.param("", id="empty"),
        pytest.param(34600111222, id="number"),
        pytest.param(["+34600111222"], id="list"),
        pytest.param(None, id="null"),
    ],
)
async def test_e164_rejected(client: httpx.AsyncClient, to: Any) -> None:
    assert_field_error(await send(client, "sms", {"to": to, "body": "x"}), "to")


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        pytest.param("ana@example.com", ["ana@example.com"], id="string"),
        pytest.param(["ana@example.com"], ["ana@example.com"], id="list-of-one"),
        pytest.param(
            ["ana@example.com", "bo@example.org"], ["ana@example.com", "bo@example.org"], id="list"
        ),
    ],
)
async def test_email_to_string_or_list(
    client: httpx.AsyncClient, fake_gateway: HttpJsonGateway, to: Any, expected: list[str]
) -> None:
    message_id = await accepted_id(client, "email", body={**EMAIL, "to": to})

    await wait_status(client, message_id, "sent")
    assert fake_gateway.sent[0]["to"] == expected


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        pytest.param({"to": "not-an-address"}, "to", id="to-invalid"),
        pytest.param({"to": ["ana@example.com", "nope"]}, "to", id="to-list-item-invalid"),
        pytest.param({"to": []}, "to", id="to-empty-list"),
        pytest.param({"to": [f"u{i}@example.com" for i in range(51)]}, "to", id="to-51"),
        pytest.param({"to": 5}, "to", id="to-number"),
        pytest.param({"to": [5]}, "to", id="to-list-of-number"),
        pytest.param({"cc": ["nope"]}, "cc", id="cc-invalid"),
        pytest.param({"from": "nope"}, "from", id="from-invalid"),
        pytest.param({"subject": ""}, "subject", id="subject-empty"),
        pytest.param({"htmlContent": None}, "htmlContent", id="html-null"),
        pytest.param({"textContent": 3}, "textContent", id="text-number"),
    ],
)
async def test_email_fields_rejected(
    client: httpx.AsyncClient, patch: dict[str, Any], field: str
) -> None:
    assert_field_error(await send(client, "email", {**EMAIL, **patch}), field)


async def test_email_from_may_carry_a_name(
    client: httpx.AsyncClient, fake_gateway: HttpJsonGateway
) -> None:
    body = {**EMAIL, "from": "Acme <hola@acme.example>", "textContent": "See you"}
    message_id = await accepted_id(client, "email", body=body)

    await wait_status(client, message_id, "sent")
    [sent] = fake_gateway.sent
    assert sent["from"] == "Acme <hola@acme.example>"
    assert sent["text"] == "See you"


@pytest.mark.parametrize(
    ("channel", "key", "field", "limit"),
    [
        pytest.param("sms", ACME_KEY, "body", 1600, id="sms-body"),
        pytest.param("whatsapp", GLOBEX_KEY, "body", 4096, id="whatsapp-body"),
        pytest.param("email", ACME_KEY, "subject", 998, id="email-subject"),
    ],
)
async def test_length_limits(
    client: httpx.AsyncClient, channel: str, key: str, field: str, limit: int
) -> None:
    base = {"sms": SMS, "whatsapp": WHATSAPP, "email": EMAIL}[channel]

    # Characters, not bytes: "ñ" is two bytes in UTF-8 and still counts as one.
    at_limit = await send(client, channel, {**base, field: "ñ" * limit}, key=key)
    over = await send(client, channel, {**base, field: "ñ" * (limit + 1)}, key=key)

    assert at_limit.status_code == 202, at_limit.text
    assert_field_error(over, field)
    assert str(limit) in over.json()["error"]["message"]


@pytest.mark.parametrize(
    ("channel", "body", "field"),
    [
        pytest.param("sms", {**SMS, "priority": "high"}, "priority", id="sms-unknown"),
        pytest.param("sms", {**SMS, "subject": "x"}, "subject", id="sms-email-field"),
        pytest.param("email", {**EMAIL, "html_content": "x"}, "html_content", id="email-snake"),
        pytest.param("sms", {"to": SMS["to"]}, "body", id="sms-missing-body"),
        pytest.param("sms", {"body": "x"}, "to", id="sms-missing-to"),
        pytest.param("sms", {**SMS, "body": ""}, "body", id="sms-empty-body"),
        pytest.param("sms", {**SMS, "body": None}, "body", id="sms-null-body"),
        pytest.param("email", {"to": "a@example.com", "subject": "s"}, "htmlContent", id="no-html"),
        pytest.param("email", {**EMAIL, "subject": None}, "subject", id="email-null-subject"),
    ],
)
async def test_unknown_and_missing_fields_are_named(
    client: httpx.AsyncClient, channel: str, body: dict[str, Any], field: str
) -> None:
    response = await send(client, channel, body)
    assert_field_error(response, field)
    if field in ("priority", "subject") and channel == "sms":
        assert "unknown" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param([SMS], id="array"),
        pytest.param("hola", id="string"),
        pytest.param(None, id="null"),
        pytest.param(42, id="number"),
    ],
)
async def test_body_must_be_an_object(client: httpx.AsyncClient, payload: Any) -> None:
    response = await client.post(
        "/messaging/send/sms", content=json.dumps(payload), headers=_json_headers()
    )
    assert_field_error(response, "body")


# -- unreadable bodies -------------------------------------------------------------------------


def _json_headers(content_type: str = "application/json") -> dict[str, str]:
    return {**auth(ACME_KEY), "Content-Type": content_type}


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"{not json", id="syntax"),
        pytest.param(b"", id="empty"),
        pytest.param(b'{"to": "+34600111222", "body": "x"', id="truncated"),
        pytest.param(b'{"to": "+34600111222", "body": "\xff\xfe"}', id="not-utf8"),
        pytest.param(b'{"to": "+34600111222", "body": NaN}', id="nan"),
        pytest.param(b'{"to": "+34600111222", "body": Infinity}', id="infinity"),
        pytest.param(b"\xef\xbb\xbf" + json.dumps(SMS).encode(), id="utf8-bom"),
    ],
)
async def test_unreadable_json_is_400(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post("/messaging/send/sms", content=raw, headers=_json_headers())
    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize(
    ("depth", "code"),
    [
        pytest.param(33, "json_too_deep", id="33"),
        pytest.param(100_000, "invalid_json", id="100000-past-the-parsers-recursion-limit"),
    ],
)
async def test_json_nested_too_deep_is_400(
    client: httpx.AsyncClient, depth: int, code: str
) -> None:
    # the body itself is one level: 32 levels in all is the most that is read
    raw = '{"to": "+34600111222", "body": "x", "extra": ' + "[" * depth + "]" * depth + "}"
    response = await client.post("/messaging/send/sms", content=raw, headers=_json_headers())
    assert_error(response, 400, code)


async def test_moderate_nesting_reaches_validation(client: httpx.AsyncClient) -> None:
    raw = '{"to": "+34600111222", "body": "x", "extra": ' + "[" * 31 + "]" * 31 + "}"
    response = await client.post("/messaging/send/sms", content=raw, headers=_json_headers())
    assert_field_error(response, "extra")


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("text/plain", id="text-plain"),
        pytest.param("application/x-www-form-urlencoded", id="form"),
        pytest.param("multipart/form-data; boundary=x", id="multipart"),
        pytest.param("", id="empty"),
    ],
)
async def test_non_json_content_type_is_415(client: httpx.AsyncClient, content_type: str) -> None:
    response = await client.post(
        "/messaging/send/sms", content=json.dumps(SMS), headers=_json_headers(content_type)
    )
    assert_error(response, 415, "unsupported_media_type")


async def test_missing_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/messaging/send/sms", content=json.dumps(SMS).encode(), headers=auth(ACME_KEY)
    )
    assert "content-type" not in response.request.headers
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("application/json; charset=utf-8", id="charset"),
        pytest.param("Application/JSON", id="case"),
    ],
)
async def test_json_content_type_variants_are_accepted(
    client: httpx.AsyncClient, content_type: str
) -> None:
    response = await client.post(
        "/messaging/send/sms", content=json.dumps(SMS), headers=_json_headers(content_type)
    )
    assert response.status_code == 202, response.text


def _oversized() -> bytes:
    return json.dumps({**SMS, "pad": "x" * MiB}).encode()


async def test_body_over_1_mib_with_content_length_is_413(client: httpx.AsyncClient) -> None:
    raw = _oversized()
    response = await client.post("/messaging/send/sms", content=raw, headers=_json_headers())
    assert response.request.headers["content-length"] == str(len(raw))
    assert_error(response, 413, "payload_too_large")


async def test_body_over_1_mib_chunked_is_413(client: httpx.AsyncClient) -> None:
    raw = _oversized()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 64 * 1024):
            yield raw[start : start + 64 * 1024]

    response = await client.post("/messaging/send/sms", content=chunks(), headers=_json_headers())
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large")


async def test_body_just_under_1_mib_is_read(client: httpx.AsyncClient) -> None:
    # It is read (not 413); the padding field is then an unknown field.
    raw = json.dumps({**SMS, "pad": "x" * (MiB - 100)}).encode()
    assert len(raw) <= MiB
    response = await client.post("/messaging/send/sms", content=raw, headers=_json_headers())
    assert_field_error(response, "pad")


async def test_invalid_content_length_is_400(client: httpx.AsyncClient) -> None:
    headers = {**_json_headers(), "Content-Length": "lots"}
    response = await client.post("/messaging/send/sms", content=json.dumps(SMS), headers=headers)
    assert response.status_code == 400, response.text
    assert_error(response, 400, response.json()["error"]["code"])


# -- tenants and channels ----------------------------------------------------------------------


async def test_unknown_channel_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await send(client, "fax", SMS), 404, "unknown_channel")


async def test_channel_not_configured_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await send(client, "sms", SMS, key=GLOBEX_KEY), 404, "channel_not_configured")


async def test_inactive_channel_is_409(client: httpx.AsyncClient) -> None:
    assert_error(await send(client, "whatsapp", WHATSAPP), 409, "channel_inactive")


async def test_unknown_tenant_with_admin_key_is_404(client: httpx.AsyncClient) -> None:
    response = await send(client, "sms", {**SMS, "tenant_id": "initech"}, key=ADMIN_KEY)
    assert_error(response, 404, "tenant_not_found")


# -- idempotency -------------------------------------------------------------------------------


def _key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


async def test_idempotent_replay_returns_the_first_response_and_sends_once(
    client: httpx.AsyncClient, fake_gateway: HttpJsonGateway, tmp_path: Path
) -> None:
    first = await send(client, "sms", SMS, headers=_key("order-1"))
    second = await send(client, "sms", dict(reversed(SMS.items())), headers=_key("order-1"))

    assert first.status_code == second.status_code == 202, (first.text, second.text)
    assert second.json() == first.json()
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    await wait_status(client, first.json()["id"], "sent")
    third = await send(client, "sms", SMS, headers=_key("order-1"))
    assert third.json() == first.json()
    assert len(fake_gateway.sent) == 1
    with sqlite3.connect(tmp_path / "pipecored.db") as db:
        (rows,) = db.execute("SELECT count(*) FROM messages WHERE tenant_id = 'acme'").fetchone()
    assert rows == 1


@pytest.mark.parametrize(
    ("first", "first_key", "again", "again_key"),
    [
        pytest.param(
            SMS, ACME_KEY, {**SMS, "tenant_id": "acme"}, ADMIN_KEY, id="tenant-key-then-admin"
        ),
        pytest.param(
            {**SMS, "tenant_id": "acme"},
            ACME_KEY,
            {**SMS, "tenantId": "acme"},
            ACME_KEY,
            id="alias",
        ),
    ],
)
async def test_idempotent_replay_ignores_how_the_tenant_is_named(
    client: httpx.AsyncClient,
    first: dict[str, Any],
    first_key: str,
    again: dict[str, Any],
    again_key: str,
) -> None:
    one = await send(client, "sms", first, key=first_key, headers=_key("k-1"))
    two = await send(client, "sms", again, key=again_key, headers=_key("k-1"))

    assert one.status_code == 202, one.text
    assert two.status_code == 202, two.text
    assert two.json()["id"] == one.json()["id"]
    assert two.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize(
    ("channel", "body"),
    [
        pytest.param("sms", {**SMS, "body": "adiós"}, id="different-body"),
        pytest.param("sms", {**SMS, "to": "+34600999888"}, id="different-to"),
        pytest.param("email", EMAIL, id="different-channel"),
    ],
)
async def test_same_idempotency_key_with_a_different_request_is_409(
    client: httpx.AsyncClient, fake_gateway: HttpJsonGateway, channel: str, body: dict[str, Any]
) -> None:
    first = await send(client, "sms", SMS, headers=_key("order-2"))
    assert first.status_code == 202, first.text

    reused = await send(client, channel, body, headers=_key("order-2"))

    assert_error(reused, 409, "idempotency_key_reused")
    await wait_status(client, first.json()["id"], "sent")
    assert len(fake_gateway.sent) == 1


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        pytest.param("k" * 255, True, id="255"),
        pytest.param("k" * 256, False, id="256"),
        pytest.param("", False, id="empty"),
    ],
)
async def test_idempotency_key_length(
    client: httpx.AsyncClient, value: str, accepted: bool
) -> None:
    response = await send(client, "sms", SMS, headers=_key(value))
    if accepted:
        assert response.status_code == 202, response.text
    else:
        assert_field_error(response, "Idempotency-Key")


async def test_idempotency_keys_are_per_tenant(
    client: httpx.AsyncClient, fake_gateway: HttpJsonGateway
) -> None:
    acme = await send(client, "sms", SMS, headers=_key("shared"))
    globex = await send(client, "whatsapp", WHATSAPP, key=GLOBEX_KEY, headers=_key("shared"))
    # the same body as acme's, from demo: still not a replay of acme's message
    demo = await send(client, "sms", SMS, key="demo-key-0123456789", headers=_key("shared"))

    for response in (acme, globex, demo):
        assert response.status_code == 202, response.text
        assert "Idempotent-Replayed" not in response.headers
    assert len({acme.json()["id"], globex.json()["id"], demo.json()["id"]}) == 3
    assert [r.json()["tenantId"] for r in (acme, globex, demo)] == ["acme", "globex", "demo"]


# -- the bytes arrive as sent ------------------------------------------------------------------

SPANISH = (
    "¿Confirmas tu reserva para mañana?\n"
    "¡Perfecto! Mesa para 4 en «La Peña» — señor Muñoz.\n"
    "Pingüino, acción, Ñandú: áéíóú ÁÉÍÓÚ ü.\r\n"
    "🍷🥘 ¡Buen provecho! 👨‍👩‍👧‍👦\t🇪🇸"
)


async def test_utf8_text_arrives_byte_exact(
    client: httpx.AsyncClient, fake_gateway: HttpJsonGateway
) -> None:
    raw = json.dumps({**SMS, "body": SPANISH}, ensure_ascii=False).encode("utf-8")
    sms = await client.post("/messaging/send/sms", content=raw, headers=_json_headers())
    email = await send(
        client,
        "email",
        {**EMAIL, "subject": SPANISH.splitlines()[0], "htmlContent": f"<p>{SPANISH}</p>"},
    )
    assert sms.status_code == email.status_code == 202, (sms.text, email.text)

    await wait_status(client, sms.json()["id"], "sent")
    await wait_status(client, email.json()["id"], "sent")
    by_id = {m["id"]: m for m in fake_gateway.sent}
    assert by_id[sms.json()["id"]]["body"] == SPANISH
    assert by_id[sms.json()["id"]]["body"].encode("utf-8") == SPANISH.encode("utf-8")
    assert by_id[email.json()["id"]]["subject"] == "¿Confirmas tu reserva para mañana?"
    assert by_id[email.json()["id"]]["html"] == f"<p>{SPANISH}</p>"


# -- durability --------------------------------------------------------------------------------


async def test_202_means_the_row_is_in_sqlite(
    client: httpx.AsyncClient, gateway: Gateway, fake_gateway: HttpJsonGateway, tmp_path: Path
) -> None:
    fake_gateway.delay = 0.5  # keep it in flight: the row must exist before the provider answers
    response = await send(client, "sms", {**SMS, "body": SPANISH})
    assert response.status_code == 202, response.text
    message_id = response.json()["id"]

    with sqlite3.connect(tmp_path / "pipecored.db") as db:
        row = db.execute(
            "SELECT tenant_id, channel, direction, status FROM messages WHERE id = ?",
            (message_id,),
        ).fetchone()
    assert row is not None
    assert row[:3] == ("acme", "sms", "outbound")
    assert row[3] in ("queued", "sending")
    fake_gateway.delay = 0.0
    await wait_status(client, message_id, "sent")


async def test_accepted_counts_in_metrics(client: httpx.AsyncClient) -> None:
    await accepted_id(client, "sms")
    await accepted_id(client, "sms", headers=_key("once"))
    await send(client, "sms", SMS, headers=_key("once"))  # a replay is not a new message

    text = (await client.get("/metrics")).text
    assert 'pipecore_messages_accepted_total{channel="sms",tenant="acme"} 2.0' in text


async def test_console_channel_delivers(client: httpx.AsyncClient) -> None:
    message_id = await accepted_id(client, "sms", key="demo-key-0123456789")
    delivered = await eventually(
        lambda: _status_is(client, message_id, ("sent", "delivered")), timeout=5
    )
    assert delivered["provider"] == "console"


async def _status_is(client: httpx.AsyncClient, message_id: str, statuses: tuple[str, ...]) -> Any:
    response = await client.get(f"/messaging/messages/{message_id}", headers=auth(ADMIN_KEY))
    body = response.json()
    return body if body["status"] in statuses else None


# -- header injection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        pytest.param({"subject": "Hola\r\nBcc: spy@evil.example"}, "subject", id="subject-crlf"),
        pytest.param({"subject": "Hola\nBcc: spy@evil.example"}, "subject", id="subject-lf"),
        pytest.param({"headers": {"X-Ref": "1\r\nBcc: spy@evil.example"}}, "headers", id="value"),
        pytest.param({"headers": {"X-Ref\r\nBcc": "spy@evil.example"}}, "headers", id="name"),
        pytest.param({"headers": {"X-Ref: 1": "2"}}, "headers", id="name-with-colon"),
        pytest.param(
            {"from": "Ana\r\nBcc: spy@evil.example <ana@example.com>"}, "from", id="display-name"
        ),
    ],
)
async def test_a_line_break_in_an_email_header_is_refused(
    client: httpx.AsyncClient, extra: dict[str, Any], field: str
) -> None:
    response = await send(client, "email", {**EMAIL, **extra})
    assert_field_error(response, field)
