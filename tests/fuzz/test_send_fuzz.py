"""Random send bodies through the whole app: never a 5xx; a 202 or the SPEC's error shape."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipecored.gateway import Gateway
from tests.conftest import ADMIN_KEY, auth
from tests.fuzz.conftest import ACME_KEY, DEMO_KEY, GLOBEX_KEY, error_shape_problem
from tests.fuzz.strategies import json_values, mutated, strings

ASCII_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
ERROR_STATUSES = {400, 401, 403, 404, 409, 413, 415, 422, 429}

VALID: dict[str, dict[str, Any]] = {
    "sms": {"to": "+34600111222", "body": "hola"},
    "whatsapp": {"to": "whatsapp:+34600111222", "body": "hola"},
    "email": {
        "to": ["ana@example.com", "bo@example.org"],
        "subject": "Your booking",
        "htmlContent": "<p>See you</p>",
        "textContent": "See you",
        "from": "Acme <hello@example.com>",
        "replyTo": "help@example.com",
        "headers": {"X-Ref": "1"},
        "tags": {"kind": "booking"},
    },
}

# Phone numbers that look nearly right: digits of any script (Arabic-Indic, full-width...),
# spaces and dashes, a newline at the end.
_digits = st.characters(categories=["Nd"])
phones = st.one_of(
    st.builds(
        lambda first, rest: "+" + first + "".join(rest),
        st.sampled_from("123456789") | _digits,
        st.lists(_digits, min_size=7, max_size=14),
    ),
    st.builds(
        lambda prefix, digits, suffix: prefix + "".join(digits) + suffix,
        st.sampled_from(["+", "", "++", "whatsapp:+", "+0", " +"]),
        st.lists(_digits | st.sampled_from("0123456789 -"), max_size=16),
        st.sampled_from(["", "\n", " ", "\x00"]),
    ),
)


@st.composite
def retexted(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with one of its strings, or one key of a mapping in it, swapped for an awkward
    one: the rest of the body stays valid, so the body gets on to the code after validation."""
    spots: list[tuple[Any, Any, bool]] = []  # (container, key or index, is the key itself)

    def walk(item: Any) -> None:
        if isinstance(item, dict):
            for k, v in item.items():
                spots.append((item, k, True))
                if isinstance(v, str):
                    spots.append((item, k, False))
                walk(v)
        elif isinstance(item, list):
            for i, v in enumerate(item):
                if isinstance(v, str):
                    spots.append((item, i, False))
                walk(v)

    value = copy.deepcopy(value)
    walk(value)
    container, where, is_key = draw(st.sampled_from(spots))
    if is_key:
        container[draw(strings)] = container.pop(where)
    else:
        container[where] = draw(strings)
    return value


@st.composite
def send_bodies(draw: st.DrawFn, channel: str) -> Any:
    # Weighted towards bodies that are nearly valid: those get past validation to the code
    # behind it (the tenant, the provider's checks, idempotency, the store).
    kind = draw(
        st.sampled_from(["retext"] * 4 + ["field"] * 2 + ["mutated"] * 2 + ["phone", "any"])
    )
    if kind == "retext":
        body = draw(retexted(VALID[channel]))
    elif kind == "mutated":
        body = draw(mutated(VALID[channel], max_mutations=3))
    elif kind == "field":
        body = dict(VALID[channel])
        body[draw(st.sampled_from([*body, "tenant_id", "tenantId", "cc", "bcc", "body"]))] = draw(
            json_values
        )
    elif kind == "phone":
        body = {**VALID["whatsapp" if channel == "whatsapp" else "sms"], "to": draw(phones)}
    else:
        body = draw(json_values)
    if isinstance(body, dict) and draw(st.integers(0, 3)) == 0:
        body[draw(st.sampled_from(["tenant_id", "tenantId"]))] = draw(
            st.sampled_from(["acme", "acme", "globex", "demo", "nobody"]) | strings
        )
    return body


@st.composite
def raw_bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    """(content, content type): JSON text as written, cut, or not JSON at all."""
    channel = draw(st.sampled_from(list(VALID)))
    text = json.dumps(draw(send_bodies(channel)), ensure_ascii=draw(st.booleans()))
    kind = draw(st.sampled_from(["json", "cut", "bytes", "nested"]))
    if kind == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    if kind == "nested":
        depth = draw(st.integers(1, 3000))
        text = "[" * depth + "]" * depth
    content = (
        draw(st.binary(max_size=200)) if kind == "bytes" else text.encode("utf-8", "surrogatepass")
    )
    content_type = draw(
        st.sampled_from(
            [
                "application/json",
                "application/json; charset=utf-8",
                "application/x+json",
                "text/plain",
                "",
            ]
        )
    )
    return content, content_type


async def _check(client: httpx.AsyncClient, response: httpx.Response, channel: str) -> None:
    assert response.status_code < 500, response.text
    if response.status_code == 202:
        accepted = response.json()
        assert accepted["status"] == "queued" and accepted["channel"] == channel, accepted
        if channel in ("sms", "whatsapp"):
            stored = await client.get(
                f"/messaging/messages/{accepted['id']}", headers=auth(ADMIN_KEY)
            )
            assert stored.status_code == 200, stored.text
            to = stored.json()["to"]
            number = to[0] if isinstance(to, list) else to
            assert ASCII_E164.fullmatch(number), f"accepted {number!r} as a phone number"
        return
    assert response.status_code in ERROR_STATUSES, (response.status_code, response.text)
    problem = error_shape_problem(
        response.status_code, response.headers.get("content-type", ""), response.content
    )
    assert problem is None, problem
    error = response.json()["error"]
    if response.status_code == 422:
        # "the message names the field"
        assert error.get("field") and error["field"] in error["message"], error


FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
KEYS = st.sampled_from([ACME_KEY, GLOBEX_KEY, DEMO_KEY, ADMIN_KEY])


# Whose key sends: mostly the tenant that has the channel active (acme's whatsapp is inactive),
# so that the body is what decides; sometimes another tenant's, or the admin's.
OWNERS = {
    "sms": ("acme", ACME_KEY),
    "email": ("acme", ACME_KEY),
    "whatsapp": ("globex", GLOBEX_KEY),
}
callers = st.sampled_from(["owner", "owner", "owner", "other", "admin"])


@settings(FUZZ, max_examples=1000)  # each example is a few ms in process
@given(
    data=st.data(),
    channel=st.sampled_from(list(VALID)),
    caller=callers,
    idempotency_key=st.none() | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E)),
)
async def test_send_bodies(
    app_client: tuple[httpx.AsyncClient, Gateway],
    data: st.DataObject,
    channel: str,
    caller: str,
    idempotency_key: str | None,
) -> None:
    client, _ = app_client
    body = data.draw(send_bodies(channel))
    owner, owner_key = OWNERS[channel]
    key = {"owner": owner_key, "other": DEMO_KEY, "admin": ADMIN_KEY}[caller]
    if caller == "admin" and isinstance(body, dict) and "tenant_id" not in body:
        body.setdefault("tenantId", owner)
    headers = auth(key)
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    content = json.dumps(body).encode()
    response = await client.post(
        f"/messaging/send/{channel}",
        content=content,
        headers={**headers, "Content-Type": "application/json"},
    )
    await _check(client, response, channel)


@FUZZ
@given(raw=raw_bodies(), channel=st.sampled_from(list(VALID)), key=KEYS)
async def test_send_raw_bodies(
    app_client: tuple[httpx.AsyncClient, Gateway],
    raw: tuple[bytes, str],
    channel: str,
    key: str,
) -> None:
    client, _ = app_client
    content, content_type = raw
    response = await client.post(
        f"/messaging/send/{channel}",
        content=content,
        headers={**auth(key), "Content-Type": content_type, "Idempotency-Key": "fuzz"},
    )
    await _check(client, response, channel)
