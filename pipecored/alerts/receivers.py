"""The built-in alert receivers: Alertmanager and generic webhooks.

An ordinary plugin module, registered through the ``pipecored`` entry-point group and written
against the public ``pipecored`` API only, like a third party's receiver. Both read the
``alerts`` section of ``pipecored.yaml`` (``ctx.config``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from pipecored import (
    Alert,
    AlertContext,
    AlertReceiver,
    AlertSendError,
    hookimpl,
    webhook_headers,
    webhook_signing_key,
)


@hookimpl
def register_alert_receivers(register: Callable[[AlertReceiver], None]) -> None:
    register(AlertmanagerReceiver())
    register(WebhookReceiver())


def rfc3339(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check_answer(response: httpx.Response, what: str) -> None:
    if response.is_success:
        return
    status = response.status_code
    # A 4xx other than 429 says the request itself is wrong: sending it again cannot help.
    raise AlertSendError(f"{what} answered HTTP {status}", retryable=status == 429 or status >= 500)


class AlertmanagerReceiver(AlertReceiver):
    """``POST {alerts.alertmanager.url}/api/v2/alerts``."""

    name = "alertmanager"
    repeat = True

    def enabled(self, ctx: AlertContext) -> bool:
        return ctx.config.alertmanager is not None

    @staticmethod
    def payload(alert: Alert, *, now: float, resend_interval: float) -> list[dict[str, Any]]:
        where = f"{alert.tenant}'s {alert.channel} channel"
        description = f"The circuit for {alert.provider} on {where} opened: {alert.reason}."
        if alert.ends_at is None:
            # Like Prometheus: an alert that is not re-sent (the daemon died) expires by itself.
            ends_at = now + 4 * resend_interval
            description += (
                " Messages go to the channel's fallback if one is up; otherwise they wait for"
                " the provider's trial call."
            )
        else:
            ends_at = alert.ends_at
            description += f" Recovered: {alert.resolution or 'closed'}."
        return [
            {
                "labels": {
                    "alertname": alert.alertname,
                    "tenant": alert.tenant,
                    "channel": alert.channel,
                    "provider": alert.provider,
                    "severity": alert.severity,
                },
                "annotations": {
                    "summary": f"{alert.provider} is down for tenant {alert.tenant} "
                    f"({alert.channel})",
                    "description": description,
                    "reason": alert.reason,
                },
                "startsAt": rfc3339(alert.starts_at),
                "endsAt": rfc3339(ends_at),
            }
        ]

    async def send(self, alert: Alert, ctx: AlertContext) -> None:
        assert ctx.config.alertmanager is not None  # enabled() said so
        body = self.payload(alert, now=time.time(), resend_interval=ctx.resend_interval)
        url = f"{ctx.config.alertmanager.url}/api/v2/alerts"
        try:
            response = await ctx.http.post(url, json=body)
        except httpx.TransportError as exc:
            raise AlertSendError(f"cannot reach Alertmanager ({type(exc).__name__})") from None
        _check_answer(response, "Alertmanager")


def webhook_body(alert: Alert) -> dict[str, Any]:
    """The alert as the webhooks' JSON: the fields of the alert, with RFC 3339 times."""
    return {
        "status": alert.status,
        "alertname": alert.alertname,
        "tenant": alert.tenant,
        "channel": alert.channel,
        "provider": alert.provider,
        "severity": alert.severity,
        "reason": alert.reason,
        "resolution": alert.resolution,
        "startsAt": rfc3339(alert.starts_at),
        "endsAt": rfc3339(alert.ends_at) if alert.ends_at is not None else None,
    }


class WebhookReceiver(AlertReceiver):
    """``POST`` the JSON body to every ``alerts.webhooks[].url``, with the Standard Webhooks
    ``webhook-id`` (the alert's id, the same on every retry) and ``webhook-timestamp``; with a
    ``secret``, signed: ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``."""

    name = "webhook"

    def enabled(self, ctx: AlertContext) -> bool:
        return bool(ctx.config.webhooks)

    async def send(self, alert: Alert, ctx: AlertContext) -> None:
        body = json.dumps(webhook_body(alert), separators=(",", ":"), ensure_ascii=False).encode()
        results = await asyncio.gather(
            *(
                self._post(ctx.http, hook.url, hook.secret, alert.id, body)
                for hook in ctx.config.webhooks
            ),
            return_exceptions=True,
        )
        # URLs may carry tokens: failures are named by their position in the list, not by URL.
        failures = [
            (index, result)
            for index, result in enumerate(results, start=1)
            if isinstance(result, BaseException)
        ]
        if failures:
            detail = "; ".join(f"webhook {i}: {err}" for i, err in failures)
            retryable = any(getattr(err, "retryable", True) for _, err in failures)
            raise AlertSendError(detail, retryable=retryable)

    @staticmethod
    async def _post(
        http: httpx.AsyncClient, url: str, secret: str | None, message_id: str, body: bytes
    ) -> None:
        # Built at each attempt: a retry carries its own timestamp, under the same id.
        key = None
        if secret:
            try:
                key = webhook_signing_key(secret)
            except ValueError as exc:
                raise AlertSendError(f"its secret is unusable: {exc}", retryable=False) from None
        headers = {"Content-Type": "application/json", **webhook_headers(message_id, body, key=key)}
        try:
            response = await http.post(url, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise AlertSendError(f"cannot reach it ({type(exc).__name__})") from None
        _check_answer(response, "it")
