"""The webhook contract: what every plugin's ``handle_webhook`` must do the same way.

Subclass :class:`WebhookContract` in a test module (the class name must start with ``Test``),
say how your provider signs a callback, and pytest runs the cases: a signed callback is read; a
changed body, a missing signature, another tenant's signature, and a tenant without the signing
credential are refused with ``WebhookSignatureError``, the signature being checked before the
body is parsed; a signed body that cannot be read is a ``WebhookPayloadError``; with the tenant's
checks turned off (``verify_signatures=False``) an unsigned callback is read. No error carries a
secret. ::

    class TestGatewayWebhooks(WebhookContract):
        provider = GatewayProvider()
        channel = "sms"
        credentials = {"token": "tok_live_0123456789", "signingSecret": "whsec_0123456789"}
        signing_credential = "signingSecret"
        signature_headers = ("x-signature",)

        def callback_body(self) -> bytes:
            return json.dumps({"events": [{"id": "gw-1", "status": "delivered"}]}).encode()

        def sign(self, body: bytes) -> SignedWebhook:
            return signed(body, "whsec_0123456789")

        def sign_for_another_tenant(self, body: bytes) -> SignedWebhook:
            return signed(body, "whsec_someone_else")
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import ClassVar

import pytest

from pipecored import (
    Provider,
    WebhookContext,
    WebhookPayloadError,
    WebhookResult,
    WebhookSignatureError,
)
from pipecored.testing.webhooks import SignedWebhook


class WebhookContract:
    """The webhook cases; see the module's docstring. Subclasses set the class attributes and
    write :meth:`callback_body`, :meth:`sign` and :meth:`sign_for_another_tenant`."""

    provider: ClassVar[Provider]
    channel: ClassVar[str]
    credentials: ClassVar[Mapping[str, str]]
    # The credential that verifies callbacks (a signing secret, a public key).
    signing_credential: ClassVar[str]
    # The headers that carry the signature (lower-case); a callback without them is unsigned.
    signature_headers: ClassVar[tuple[str, ...]]
    # What the error says when the tenant has no signing credential, as a regular expression.
    missing_signing_credential_message: ClassVar[str | None] = None
    # A body the provider never sends: signed, it is a WebhookPayloadError.
    malformed_body: ClassVar[bytes] = b"not json"

    # --- what a subclass writes ---------------------------------------------------------------

    def callback_body(self) -> bytes:
        """The body of a callback the provider sends with at least one delivery status."""
        raise NotImplementedError

    def sign(self, body: bytes) -> SignedWebhook:
        """``body`` as the provider sends it to this tenant: signed, with its headers."""
        raise NotImplementedError

    def sign_for_another_tenant(self, body: bytes) -> SignedWebhook:
        """``body`` signed with another tenant's secret or key."""
        raise NotImplementedError

    def webhook_context(
        self, credentials: Mapping[str, str] | None = None, *, verify_signatures: bool = True
    ) -> WebhookContext:
        return WebhookContext(
            tenant_id="contract",
            channel=self.channel,
            credentials=self.credentials if credentials is None else credentials,
            settings=dict(self.provider.default_settings),
            verify_signatures=verify_signatures,
        )

    # --- helpers --------------------------------------------------------------------------------

    def unsigned(self, signed: SignedWebhook) -> SignedWebhook:
        headers = {
            k: v for k, v in signed.headers.items() if k.lower() not in self.signature_headers
        }
        return replace(signed, headers=headers)

    async def handle(
        self, signed: SignedWebhook, credentials: Mapping[str, str] | None = None, **context: bool
    ) -> WebhookResult:
        return await self.provider.handle_webhook(
            signed.webhook_request(), self.webhook_context(credentials, **context)
        )

    async def refused(
        self, signed: SignedWebhook, credentials: Mapping[str, str] | None = None
    ) -> WebhookSignatureError:
        with pytest.raises(WebhookSignatureError) as caught:
            await self.handle(signed, credentials)
        secrets = [self.credentials.get(name, "") for name in self.provider.secret_names()]
        for secret in filter(None, secrets):
            assert secret not in str(caught.value), "a secret reached the error"
        return caught.value

    # --- the cases ------------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_a_signed_callback_is_read(self) -> None:
        result = await self.handle(self.sign(self.callback_body()))

        assert result.events, "the callback_body() should carry a delivery status"
        assert 200 <= result.response.status < 300

    @pytest.mark.asyncio
    async def test_a_changed_body_is_refused(self) -> None:
        signed = self.sign(self.callback_body())
        await self.refused(replace(signed, body=signed.body + b" "))

    @pytest.mark.asyncio
    async def test_an_unsigned_callback_is_refused(self) -> None:
        await self.refused(self.unsigned(self.sign(self.callback_body())))

    @pytest.mark.asyncio
    async def test_another_tenants_signature_is_refused(self) -> None:
        await self.refused(self.sign_for_another_tenant(self.callback_body()))

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        "value", [pytest.param(None, id="missing"), pytest.param("", id="empty")]
    )
    async def test_without_the_signing_credential_every_callback_is_refused(
        self, value: str | None
    ) -> None:
        credentials = {k: v for k, v in self.credentials.items() if k != self.signing_credential}
        if value is not None:
            credentials[self.signing_credential] = value

        error = await self.refused(self.sign(self.callback_body()), credentials)
        await self.refused(self.unsigned(self.sign(self.callback_body())), credentials)

        if self.missing_signing_credential_message is not None:
            assert re.search(self.missing_signing_credential_message, str(error)), str(error)

    @pytest.mark.asyncio
    async def test_the_signature_is_checked_before_the_body_is_read(self) -> None:
        signed = self.sign(self.callback_body())
        await self.refused(replace(signed, body=self.malformed_body))

    @pytest.mark.asyncio
    async def test_a_signed_but_malformed_body_is_a_payload_error(self) -> None:
        with pytest.raises(WebhookPayloadError):
            await self.handle(self.sign(self.malformed_body))

    @pytest.mark.asyncio
    async def test_with_checks_turned_off_an_unsigned_callback_is_read(self) -> None:
        signed = self.sign(self.callback_body())
        checked = await self.handle(signed)

        unchecked = await self.handle(self.unsigned(signed), verify_signatures=False)

        assert unchecked.events == checked.events
