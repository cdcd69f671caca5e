"""The provider contract: what every provider plugin must do the same way, tested once.

Subclass :class:`ProviderContract` in a test module (the class name must start with ``Test``),
describe your provider, its fake and a message, and pytest runs the whole suite against your
plugin, with plain httpx and with the client the daemon hands to plugins::

    class TestGatewayContract(ProviderContract):
        provider = GatewayProvider()
        channel = "sms"
        credentials = {"token": "tok_live_0123456789"}
        wrong_credentials = {"token": "tok_revoked_0000"}
        answer_without_id = "retried"

        def start_fake(self) -> ScriptedFake:
            return FakeGateway(token="tok_live_0123456789").start()

        def message(self) -> OutboundMessage:
            return OutboundMessage(id="msg_1", tenant_id="acme", channel="sms",
                                   to=("+34600111222",), body="Hola")

        def error_reply(self, status: int, text: str) -> Reply:
            return Reply(status, json.dumps({"error": text}).encode())

        def reply_without_id(self) -> Reply:
            return Reply(201, b"{}")

The cases: the provider declares itself consistently and imports only the public API; a send
succeeds; a slow provider is a ``ProviderTimeout`` and a closed port a retryable
``connection_error``; an answer that is not the provider's JSON (a proxy's page) is classified by
its status; a 429's ``Retry-After`` (seconds or an HTTP date) becomes ``retry_after``; a secret
the provider echoes in its error text is masked; wrong credentials make the provider
``unavailable`` without being echoed; a 2xx answer without the provider's id is handled as
declared. No error raised in any case may carry a secret. Every request the plugin sends must
pass the fake's check (:mod:`pipecored.testing.checks`).

Requires pytest and pytest-asyncio (the ``pipecored[testing]`` extra).
"""

from __future__ import annotations

import ast
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
import pytest
import pytest_asyncio

import pipecored
from pipecored import (
    OutboundMessage,
    Provider,
    ProviderError,
    ProviderTimeout,
    SendContext,
)
from pipecored.testing.clients import CLIENT_KINDS, http_client
from pipecored.testing.ports import closed_port_url
from pipecored.testing.scripted import Reply, ScriptedFake

_PAGE = b"<html><body><h1>Bad Gateway</h1></body></html>"
# (status, body, content type): answers that are not the provider's own error JSON.
_PLAIN_ANSWERS = [
    pytest.param(400, _PAGE, "text/html", id="400-page"),
    pytest.param(401, _PAGE, "text/html", id="401-page"),
    pytest.param(403, _PAGE, "text/html", id="403-page"),
    pytest.param(404, _PAGE, "text/html", id="404-page"),
    pytest.param(418, b"teapot", "text/plain", id="418-unknown"),
    pytest.param(429, _PAGE, "text/html", id="429-page"),
    pytest.param(500, _PAGE, "text/html", id="500-page"),
    pytest.param(502, _PAGE, "text/html", id="502-page"),
    pytest.param(503, _PAGE, "text/html", id="503-page"),
    pytest.param(504, _PAGE, "text/html", id="504-page"),
    pytest.param(504, b"", None, id="504-empty"),
]


def _http_date(offset: float) -> str:
    return format_datetime(datetime.fromtimestamp(time.time() + offset, tz=UTC), usegmt=True)


# (Retry-After value, or an offset for an HTTP date made when the test runs; expected wait)
_RETRY_AFTER = [
    pytest.param("7", 7.0, id="seconds"),
    pytest.param(120.0, 120.0, id="http-date"),
    pytest.param(-60.0, 0.0, id="http-date-past"),
    pytest.param("-4", 0.0, id="negative-floored"),
    pytest.param("soon", None, id="unreadable"),
    pytest.param(None, None, id="absent"),
]


def private_imports(source: Path) -> list[str]:
    """What ``source`` imports from pipecored beyond its public API (the names in
    ``pipecored.__all__``, imported from ``pipecored`` itself)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("pipecored.")]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").split(".")[0] == "pipecored"
        ):
            if node.module != "pipecored":
                found.append(str(node.module))
            else:
                found += [a.name for a in node.names if a.name not in pipecored.__all__]
    return found


class ProviderContract:
    """The contract suite; see the module's docstring. Subclasses set the class attributes and
    write :meth:`start_fake`, :meth:`message`, :meth:`error_reply` and
    :meth:`reply_without_id`."""

    provider: ClassVar[Provider]
    channel: ClassVar[str]
    credentials: ClassVar[Mapping[str, str]]
    # Credentials the fake refuses as the provider refuses a revoked key.
    wrong_credentials: ClassVar[Mapping[str, str]]
    # The ProviderError code for those credentials, when the provider has its own.
    wrong_credentials_code: ClassVar[str | None] = None
    # A 2xx answer without the provider's id: "retried" (asking again is safe),
    # "failed" (the provider may have taken it), or "accepted" (the message's own id stands in).
    answer_without_id: ClassVar[Literal["retried", "failed", "accepted"]]
    # How an answer that is not the provider's JSON is classified, by status.
    retried_statuses: ClassVar[frozenset[int]] = frozenset({429, 500, 502, 503, 504})
    unavailable_statuses: ClassVar[frozenset[int]] = frozenset({401, 403})
    # The exact message for such an answer ("Acme answered HTTP {status}"), when it is fixed.
    plain_answer_message: ClassVar[str | None] = None
    # Whether the provider's own error text is the ProviderError's message, as it is.
    error_text_verbatim: ClassVar[bool] = False
    status_callback_url: ClassVar[str | None] = None

    # --- what a subclass writes ---------------------------------------------------------------

    def start_fake(self) -> ScriptedFake:
        """A started fake of the provider (one serves the class's tests; it is reset for each)."""
        raise NotImplementedError

    def message(self) -> OutboundMessage:
        """A message the provider accepts."""
        raise NotImplementedError

    def error_reply(self, status: int, text: str) -> Reply:
        """The provider's own error answer with ``status`` whose message is ``text`` (for a 429,
        one that means "slow down")."""
        raise NotImplementedError

    def reply_without_id(self) -> Reply:
        """A 2xx answer to a send that lacks the provider's message id."""
        raise NotImplementedError

    def secret_texts(self) -> list[str]:
        """Texts that must never appear in an error: the secret credentials (a subclass adds
        the forms its provider sends them in, such as a Basic authorization)."""
        names = self.provider.secret_names()
        values = [
            value
            for credentials in (self.credentials, self.wrong_credentials)
            for name, value in credentials.items()
            if name in names and value
        ]
        return list(dict.fromkeys(values))

    def send_context(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        *,
        timeout: float = 5.0,
        credentials: Mapping[str, str] | None = None,
    ) -> SendContext:
        return SendContext(
            tenant_id=self.message().tenant_id,
            channel=self.channel,
            credentials=self.credentials if credentials is None else credentials,
            base_url=base_url,
            http=http,
            timeout=timeout,
            status_callback_url=self.status_callback_url,
            settings=dict(self.provider.default_settings),
        )

    # --- fixtures -------------------------------------------------------------------------------

    # Session-scoped (one per contract class): with the tests shuffled, a class-scoped server
    # would be stopped and started again between most tests, at 0.2 s each.
    @pytest.fixture(scope="session")
    @classmethod
    def contract_fake(cls) -> Iterator[ScriptedFake]:
        fake = cls().start_fake()
        try:
            yield fake
        finally:
            fake.stop()

    @pytest.fixture
    def fake(self, contract_fake: ScriptedFake) -> Iterator[ScriptedFake]:
        """The class's fake, reset; a request it refused fails the test that sent it."""
        contract_fake.reset()
        yield contract_fake
        contract_fake.raise_violations()

    @pytest_asyncio.fixture(params=CLIENT_KINDS)
    async def client(self, request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
        """Plain httpx, and the aiohttp-backed client the daemon hands to plugins."""
        async with http_client(request.param) as http:
            yield http

    # --- helpers --------------------------------------------------------------------------------

    def assert_no_secret(self, error: BaseException) -> None:
        for text in (str(error), repr(error), getattr(error, "message", "")):
            for secret in self.secret_texts():
                assert secret not in text, f"a secret reached the error: {text!r}"

    async def send_failing(
        self, fake: ScriptedFake, client: httpx.AsyncClient, **context: Any
    ) -> ProviderError:
        """Send :meth:`message` through ``fake``, expecting a ``ProviderError``; returns it."""
        with pytest.raises(ProviderError) as caught:
            await self.provider.send(self.message(), self.send_context(client, fake.url, **context))
        self.assert_no_secret(caught.value)
        return caught.value

    # --- the cases ------------------------------------------------------------------------------

    def test_declares_itself_consistently(self) -> None:
        provider = self.provider
        assert provider.name and provider.name == provider.name.strip()
        assert self.channel in provider.channels
        names = [c.name for c in provider.credentials]
        assert len(names) == len(set(names)), names
        assert provider.secret_names() <= set(names)
        missing = [
            c.name
            for c in provider.credentials
            if c.required_for(self.channel) and not self.credentials.get(c.name)
        ]
        assert not missing, f"the contract's credentials lack required {missing}"

    def test_imports_only_the_public_api(self) -> None:
        top = Path(sys.modules[type(self.provider).__module__.split(".")[0]].__file__ or "")
        sources = sorted(top.parent.rglob("*.py")) if top.name == "__init__.py" else [top]
        for source in sources:
            assert private_imports(source) == [], source

    @pytest.mark.asyncio
    async def test_sends(self, fake: ScriptedFake, client: httpx.AsyncClient) -> None:
        result = await self.provider.send(self.message(), self.send_context(client, fake.url))

        assert isinstance(result.provider_message_id, str) and result.provider_message_id
        assert result.status in ("sent", "delivered")
        assert result.http_status is None or 200 <= result.http_status < 300
        assert fake.requests

    @pytest.mark.asyncio
    async def test_a_slow_provider_is_a_timeout(
        self, fake: ScriptedFake, client: httpx.AsyncClient
    ) -> None:
        release = fake.hold_next()
        try:
            error = await self.send_failing(fake, client, timeout=0.2)
        finally:
            release.set()
        # The held answer is given now; waiting for it keeps it out of the next test.
        await fake.wait_for_answers(1)

        assert isinstance(error, ProviderTimeout)
        assert (error.provider, error.code, error.retryable) == (
            self.provider.name,
            "timeout",
            True,
        )

    @pytest.mark.asyncio
    async def test_a_closed_port_is_a_retryable_connection_error(
        self, client: httpx.AsyncClient
    ) -> None:
        with pytest.raises(ProviderError) as caught:
            await self.provider.send(self.message(), self.send_context(client, closed_port_url()))

        error = caught.value
        assert type(error) is ProviderError
        assert (error.provider, error.code, error.retryable) == (
            self.provider.name,
            "connection_error",
            True,
        )
        self.assert_no_secret(error)

    @pytest.mark.asyncio
    @pytest.mark.parametrize(("status", "body", "content_type"), _PLAIN_ANSWERS)
    async def test_an_answer_without_the_providers_json_is_classified_by_status(
        self,
        fake: ScriptedFake,
        client: httpx.AsyncClient,
        status: int,
        body: bytes,
        content_type: str | None,
    ) -> None:
        fake.script_next(Reply(status, body, content_type=content_type))

        error = await self.send_failing(fake, client)

        assert type(error) is ProviderError
        assert (error.provider, error.code, error.http_status) == (
            self.provider.name,
            f"http_{status}",
            status,
        )
        assert error.retryable is (status in self.retried_statuses)
        assert error.unavailable is (status in self.unavailable_statuses)
        if self.plain_answer_message is not None:
            assert error.message == self.plain_answer_message.format(status=status)
        else:
            assert str(status) in error.message

    @pytest.mark.asyncio
    @pytest.mark.parametrize(("value", "expected"), _RETRY_AFTER)
    async def test_a_rate_limit_carries_the_wait(
        self,
        fake: ScriptedFake,
        client: httpx.AsyncClient,
        value: str | float | None,
        expected: float | None,
    ) -> None:
        reply = self.error_reply(429, "too many requests")
        if value is not None:
            header = _http_date(value) if isinstance(value, float) else value
            reply = replace(reply, headers={**reply.headers, "Retry-After": header})
        fake.script_next(reply)

        error = await self.send_failing(fake, client)

        assert error.retryable
        assert error.http_status == 429
        if expected is None or expected == 0.0:
            assert error.retry_after == expected
        else:
            # An HTTP date counts whole seconds from when it was made.
            assert error.retry_after == pytest.approx(expected, abs=3)

    @pytest.mark.asyncio
    async def test_a_secret_echoed_in_the_providers_error_is_masked(
        self, fake: ScriptedFake, client: httpx.AsyncClient
    ) -> None:
        secrets = [v for k, v in self.credentials.items() if k in self.provider.secret_names()]
        assert secrets, "the provider declares no secret credential"
        for secret in secrets:
            fake.script_next(self.error_reply(400, f"the key {secret} is malformed"))

            error = await self.send_failing(fake, client)

            assert error.http_status == 400
            if self.error_text_verbatim:
                assert error.message == "the key **** is malformed"
            else:
                assert error.message.endswith("the key **** is malformed"), error.message

    @pytest.mark.asyncio
    async def test_wrong_credentials_make_the_provider_unavailable(
        self, fake: ScriptedFake, client: httpx.AsyncClient
    ) -> None:
        error = await self.send_failing(fake, client, credentials=self.wrong_credentials)

        assert (error.unavailable, error.retryable) == (True, False)
        if self.wrong_credentials_code is not None:
            assert error.code == self.wrong_credentials_code

    @pytest.mark.asyncio
    async def test_an_answer_without_the_providers_id(
        self, fake: ScriptedFake, client: httpx.AsyncClient
    ) -> None:
        fake.script_next(self.reply_without_id())
        message = self.message()
        context = self.send_context(client, fake.url)

        if self.answer_without_id == "accepted":
            result = await self.provider.send(message, context)
            assert result.provider_message_id == message.id
            return
        with pytest.raises(ProviderError) as caught:
            await self.provider.send(message, context)
        error = caught.value
        assert error.code == "invalid_response"
        assert error.retryable is (self.answer_without_id == "retried")
        self.assert_no_secret(error)
