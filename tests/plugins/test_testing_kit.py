"""pipecored.testing itself: strict schemas, request checks on arrival, scripted and held
answers, and a contract suite that fails a plugin that breaks it."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from starlette.responses import JSONResponse, Response

from pipecored.testing import (
    FakeServer,
    JsonSchemaCheck,
    RecordedRequest,
    RequestViolation,
    ScriptedFake,
    strict_schema,
)

OBJECT = {"type": "object", "properties": {"a": {"type": "string"}}}


def valid(schema: dict[str, Any], instance: Any) -> bool:
    return jsonschema.Draft202012Validator(strict_schema(schema)).is_valid(instance)


@pytest.mark.parametrize(
    ("schema", "instance", "expected"),
    [
        pytest.param(OBJECT, {"a": "x"}, True, id="declared"),
        pytest.param(OBJECT, {"a": "x", "b": 1}, False, id="undeclared-refused"),
        pytest.param(
            {**OBJECT, "additionalProperties": True}, {"b": 1}, True, id="explicitly-open"
        ),
        pytest.param({"type": "object"}, {"b": 1}, True, id="free-form-map"),
        pytest.param(
            {"type": "object", "properties": {"inner": OBJECT}},
            {"inner": {"a": "x", "typo": 1}},
            False,
            id="nested-refused",
        ),
        pytest.param(
            {"type": "array", "items": OBJECT}, [{"a": "x"}, {"b": 1}], False, id="array-items"
        ),
        pytest.param(
            {"allOf": [OBJECT, {"properties": {"b": {"type": "integer"}}}]},
            {"a": "x", "b": 1},
            True,
            id="all-of-merged",
        ),
        pytest.param(
            {"allOf": [OBJECT, {"properties": {"b": {"type": "integer"}}}]},
            {"a": "x", "b": 1, "c": 2},
            False,
            id="all-of-undeclared-refused",
        ),
        pytest.param(
            {
                "allOf": [
                    {"$ref": "#/$defs/base"},
                    {"additionalProperties": False, "properties": {"b": {"type": "integer"}}},
                ],
                "$defs": {"base": OBJECT},
            },
            {"a": "x", "b": 1},
            True,
            id="all-of-closed-branch-as-meta-writes-it",
        ),
        pytest.param(
            {"oneOf": [OBJECT, {"properties": {"b": {"type": "integer"}}}]},
            {"b": 1},
            True,
            id="one-of-branch",
        ),
        pytest.param(
            {"oneOf": [OBJECT, {"properties": {"b": {"type": "integer"}}}]},
            {"b": 1, "c": 2},
            False,
            id="one-of-undeclared-refused",
        ),
        pytest.param(
            {**OBJECT, "anyOf": [{"properties": {"b": {"type": "integer"}}}]},
            {"a": "x", "b": 1},
            True,
            id="properties-spread-over-branches-left-open",
        ),
        pytest.param(
            {
                **OBJECT,
                "if": {"properties": {"a": {"const": "x"}}},
                "then": {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
            },
            {"a": "x", "b": 1},
            False,
            id="then-sees-the-parents-object",
        ),
        pytest.param(
            {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
                "if": {"properties": {"a": {"const": "x"}}},
                "then": {"required": ["b"]},
            },
            {"a": "x"},
            False,
            id="if-is-a-condition-not-closed",
        ),
        pytest.param(
            {"type": "object", "properties": {"properties": OBJECT}},
            {"properties": {"a": "x"}},
            True,
            id="a-property-called-properties",
        ),
    ],
)
def test_strict_schema_refuses_only_what_the_schema_does_not_declare(
    schema: dict[str, Any], instance: Any, expected: bool
) -> None:
    assert valid(schema, instance) is expected


def test_strict_schema_leaves_the_document_as_it_was() -> None:
    document = {"allOf": [OBJECT, {"properties": {"b": {"type": "integer"}}}]}
    before = copy.deepcopy(document)
    strict_schema(document)
    assert document == before


ROUTES = {("POST", "/messages"): {"type": "object", "properties": {"to": {"type": "string"}}}}


def ok(request: RecordedRequest) -> Response:
    return JSONResponse({"id": "1"}, status_code=201)


def test_a_request_that_does_not_conform_is_answered_400_and_raised() -> None:
    server = FakeServer(ok, check=JsonSchemaCheck(ROUTES)).start()
    try:
        good = httpx.post(f"{server.url}/messages", json={"to": "+34600111222"})
        typo = httpx.post(f"{server.url}/messages", json={"to": "+34600111222", "tu": "x"})
        elsewhere = httpx.post(f"{server.url}/elsewhere", json={})
        assert (good.status_code, typo.status_code, elsewhere.status_code) == (201, 400, 400)
        assert "'tu' was unexpected" in typo.json()["message"]
        assert len(server.requests) == 3
        with pytest.raises(RequestViolation, match=r"2 requests did not conform") as caught:
            server.raise_violations()
        assert "POST /messages" in str(caught.value)
        assert "POST /elsewhere: no such route" in str(caught.value)
        server.raise_violations()  # raised once, then forgotten
    finally:
        server.stop()


def test_stopping_raises_what_no_test_raised() -> None:
    server = FakeServer(ok, check=JsonSchemaCheck(ROUTES)).start()
    httpx.post(f"{server.url}/messages", content=b"to=x")
    with pytest.raises(RequestViolation, match="not JSON"):
        server.stop()


class Echo(ScriptedFake):
    def default_answer(self, request: RecordedRequest) -> Response:
        return JSONResponse({"id": len(self.requests)}, status_code=201)


async def test_a_held_answer_outlasts_any_timeout_until_released() -> None:
    with Echo() as fake:
        release = fake.hold_next()
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(f"{fake.url}/x", timeout=0.2)
            assert fake.server.answered == 0
            release.set()
            await fake.wait_for_answers(1)
            answer = await client.post(f"{fake.url}/x")
        assert (answer.status_code, answer.json()) == (201, {"id": 2})


async def test_scripted_answers_come_first_then_the_fakes_own() -> None:
    with Echo() as fake:
        fake.respond_next(503, "busy", {"retry-after": "3"})
        async with httpx.AsyncClient() as client:
            first = await client.get(f"{fake.url}/x")
            second = await client.get(f"{fake.url}/x")
        fake.reset()
        assert (first.status_code, first.text, first.headers["retry-after"]) == (503, "busy", "3")
        assert second.status_code == 201
        assert (fake.requests, fake.server.answered) == ([], 0)


SAMPLE_PLUGIN = """
import hashlib
import hmac
import json

from pipecored import (
    CredentialField, Provider, ProviderError, SendResult, StatusEvent, WebhookPayloadError,
    WebhookResult, WebhookSignatureError, parse_retry_after, request_provider, scrub_secrets,
)


def parse(body):
    try:
        events = json.loads(body)["events"]
    except (ValueError, KeyError, TypeError):
        raise WebhookPayloadError("not an event batch") from None
    return [StatusEvent(status=e["status"], provider_message_id=e["id"]) for e in events]


class Sample(Provider):
    name = "sample"
    channels = frozenset({"sms"})
    credentials = (CredentialField("token", secret=True),)

    def __init__(self, broken=""):
        self.broken = broken

    def classify(self, response, secrets):
        status = response.status_code
        try:
            text = response.json().get("error")
        except ValueError:
            text = None
        text = text or f"the gateway answered HTTP {status}"
        retried = {429, 500, 502, 503, 504} - ({503} if self.broken == "503-permanent" else set())
        return ProviderError(
            text if self.broken == "secret-leak" else scrub_secrets(text, secrets),
            retryable=status in retried,
            unavailable=status in (401, 403),
            provider=self.name,
            code=f"http_{status}",
            http_status=status,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )

    async def send(self, message, ctx):
        body = {"to": message.to[0]}
        if self.broken == "unknown-field":
            body["priority"] = "high"
        response = await request_provider(
            ctx.http, "POST", f"{ctx.base_url}/messages", provider=self.name,
            timeout=ctx.timeout, secrets=[ctx.credentials["token"]], classify=self.classify,
            json=body, headers={"Authorization": f"Bearer {ctx.credentials['token']}"},
        )
        provider_id = response.json().get("id")
        if not provider_id:
            raise ProviderError(
                "no id", retryable=False, provider=self.name, code="invalid_response"
            )
        return SendResult(provider_id, http_status=response.status_code)

    async def handle_webhook(self, request, ctx):
        if self.broken == "parses-first":
            parse(request.body)
        if ctx.verify_signatures and self.broken != "unverified":
            secret = ctx.credentials.get("token", "")
            expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
            given = request.headers.get("x-signature", "")
            if not secret or not hmac.compare_digest(expected, given):
                raise WebhookSignatureError("bad signature")
        return WebhookResult(events=parse(request.body))
"""

SAMPLE_TESTS = """
import hashlib
import hmac
import json

from sample_plugin import Sample
from starlette.responses import JSONResponse

from pipecored import OutboundMessage
from pipecored.testing import (
    JsonSchemaCheck, ProviderContract, Reply, ScriptedFake, SignedWebhook, WebhookContract,
)

SCHEMA = {"type": "object", "properties": {"to": {"type": "string"}}}
TOKEN = "tok_0123456789"


class Gateway(ScriptedFake):
    def __init__(self):
        super().__init__(check=JsonSchemaCheck({("POST", "/messages"): SCHEMA}))

    def default_answer(self, request):
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"error": "unknown token"}, status_code=401)
        return JSONResponse({"id": "1"}, status_code=201)


class SampleContract(ProviderContract, WebhookContract):
    channel = "sms"
    credentials = {"token": TOKEN}
    wrong_credentials = {"token": "tok_revoked_0000"}
    answer_without_id = "failed"
    signing_credential = "token"
    signature_headers = ("x-signature",)

    def start_fake(self):
        return Gateway().start()

    def message(self):
        return OutboundMessage(id="m", tenant_id="t", channel="sms", to=("+34600111222",))

    def error_reply(self, status, text):
        return Reply(status, json.dumps({"error": text}).encode())

    def reply_without_id(self):
        return Reply(201, b"{}")

    def callback_body(self):
        return json.dumps({"events": [{"id": "1", "status": "delivered"}]}).encode()

    def sign(self, body):
        return signed(body)

    def sign_for_another_tenant(self, body):
        return signed(body, "tok_someone_else")


def signed(body, secret=TOKEN):
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return SignedWebhook("POST", "https://x.example/hook", {"x-signature": signature}, body)


BROKEN = {
    "TestSound": "",
    "TestUnknownField": "unknown-field",
    "TestSecretLeak": "secret-leak",
    "TestPermanent503": "503-permanent",
    "TestUnverified": "unverified",
    "TestParsesFirst": "parses-first",
}
for name, broken in BROKEN.items():
    globals()[name] = type(name, (SampleContract,), {"provider": Sample(broken)})
"""


PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
STRICT_ASYNCIO = ["-o", "asyncio_mode=strict", "-o", "asyncio_default_fixture_loop_scope=function"]


def test_the_contracts_pass_a_sound_plugin_and_fail_each_broken_one(tmp_path: Path) -> None:
    (tmp_path / "sample_plugin.py").write_text(SAMPLE_PLUGIN, encoding="utf-8")
    (tmp_path / "test_samples.py").write_text(SAMPLE_TESTS, encoding="utf-8")
    classified = "test_an_answer_without_the_providers_json_is_classified_by_status"
    selected = [
        "test_samples.py::TestSound",  # both whole contracts
        "test_samples.py::TestUnknownField::test_sends",
        "test_samples.py::TestSecretLeak::test_a_secret_echoed_in_the_providers_error_is_masked",
        f"test_samples.py::TestPermanent503::{classified}",
        "test_samples.py::TestUnverified::test_an_unsigned_callback_is_refused",
        "test_samples.py::TestParsesFirst::test_the_signature_is_checked_before_the_body_is_read",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    result = subprocess.run(
        # Strict mode: the contract needs no asyncio_mode = auto from its user.
        [*PYTEST, *STRICT_ASYNCIO, "-q", "-rfE", *selected],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = result.stdout + result.stderr
    failed: dict[str, set[str]] = {}
    for line in report.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            _, cls, test = line.split(" ")[1].split("::")
            failed.setdefault(cls, set()).add(test)

    assert "TestSound" not in failed, report
    assert failed["TestUnverified"] == {"test_an_unsigned_callback_is_refused"}, report
    assert failed["TestParsesFirst"] == {"test_the_signature_is_checked_before_the_body_is_read"}, (
        report
    )
    assert "' was unexpected" in report and "priority" in report, report
    assert {"test_sends[httpx]", "test_sends[aiohttp]"} <= failed["TestUnknownField"], report
    assert "test_a_secret_echoed_in_the_providers_error_is_masked[httpx]" in failed.get(
        "TestSecretLeak", set()
    ), report
    assert f"{classified}[httpx-503-page]" in failed.get("TestPermanent503", set()), report
    assert f"{classified}[httpx-502-page]" not in failed["TestPermanent503"], report
    assert result.returncode == 1, report
