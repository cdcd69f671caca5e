"""The types an alert receiver plugin programs against.

A receiver is an object registered through the ``register_alert_receivers(register)`` hook. The
daemon raises an :class:`Alert` when a tenant's provider fails (its circuit opens) and resolves it
when the provider recovers; each receiver's :meth:`AlertReceiver.send` gets every state change,
with the live settings in an :class:`AlertContext`: the ``alerts`` section of ``pipecored.yaml``
and the receiver's own ``plugins.<name>`` entry.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import httpx

from pipecored.config.model import AlertsConfig

ALERTNAME = "PipecoreProviderDown"

AlertStatus = Literal["firing", "resolved"]
Severity = Literal["critical", "warning"]


@dataclass(frozen=True, slots=True)
class Alert:
    """One state of one outage of one tenant's provider."""

    status: AlertStatus
    tenant: str
    channel: str
    provider: str
    severity: Severity
    reason: str  # the failure that opened the circuit: an error code and the scrubbed message
    starts_at: float  # when the circuit opened (epoch seconds)
    ends_at: float | None = None  # when it closed; None while firing
    resolution: str | None = None  # what closed it ("a trial call succeeded", ...)
    alertname: str = ALERTNAME

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.tenant, self.channel, self.provider)

    @property
    def id(self) -> str:
        """This state of this outage: the same on every retry and re-send of it, so a receiver
        can drop duplicates by it (the webhooks' ``webhook-id``); its firing and its resolve have
        different ids, and so do two outages of one provider."""
        identity = "\0".join(
            (self.status, self.tenant, self.channel, self.provider, repr(self.starts_at))
        )
        return "alert_" + hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class AlertContext:
    """What a receiver needs besides the alert."""

    config: AlertsConfig  # ``alerts`` of the live pipecored.yaml
    http: httpx.AsyncClient  # shared by every receiver; pass ``timeout=`` per call if needed
    resend_interval: float  # how often firing alerts reach receivers with ``repeat = True``
    # The receiver's own ``plugins.<name>`` entry of the live pipecored.yaml (empty when there is
    # none), as written there: the receiver validates it. Read only.
    settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


class AlertReceiver(abc.ABC):
    """Where alerts go. One object serves the whole daemon; settings arrive in the context."""

    name: str = ""  # unique; the ``receiver`` label of pipecore_alerts_total
    # Re-send firing alerts every resend interval while they last (what Alertmanager expects).
    repeat: bool = False

    def enabled(self, ctx: AlertContext) -> bool:
        """Whether the live settings (``ctx.config``, ``ctx.settings``) give this receiver
        anywhere to send; checked before every attempt, so a reload can turn it on or off."""
        return True

    @abc.abstractmethod
    async def send(self, alert: Alert, ctx: AlertContext) -> None:
        """Deliver one alert, or raise (:class:`AlertSendError`, or any error: retried)."""
