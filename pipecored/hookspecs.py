"""Every hook pipecored calls, in one place.

Hooks only *register*: they are called once, when the plugin manager is built, and hand objects
to a callback. The work happens in methods of those objects. Hooks are called with keyword
arguments, so a spec may gain arguments later without breaking plugins that do not take them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pipecored.alert_receiver import AlertReceiver
    from pipecored.provider import Provider

hookspec = pluggy.HookspecMarker("pipecored")


@hookspec
def register_providers(register: Callable[[Provider], None]) -> None:
    """Register provider objects: call ``register(provider)`` once per provider.

    Called once at start-up, before any configuration is read, so that tenant files can be
    checked against each provider's declared channels and credentials. A provider's ``name`` must
    be unique across all plugins; a second provider with a name already taken is refused with an
    error naming both distributions. Must not do I/O: return quickly.
    """


@hookspec
def register_alert_receivers(register: Callable[[AlertReceiver], None]) -> None:
    """Register alert receivers: call ``register(receiver)`` once per receiver.

    Called once at start-up. A receiver is a ``pipecored.AlertReceiver``: a unique ``name`` and
    ``async send(alert, ctx)``, called from a background task for every alert (a provider's
    circuit opening fires one, its closing resolves it) while ``enabled(ctx)`` says the live
    settings give it somewhere to send. A receiver name taken twice stops the daemon with an
    error naming both distributions. Must not do I/O: return quickly.

    Settings come live from ``pipecored.yaml`` in ``ctx`` (a ``pipecored.AlertContext``), read
    again for every attempt so that a reload applies to the next alert: ``ctx.settings`` is the
    receiver's own entry under ``plugins:`` (``plugins: {pager: {url: ..., routingKey: ...}}``
    reaches the receiver named ``pager``; empty when there is none), for the receiver to
    validate; ``ctx.config`` is the ``alerts`` section that the built-in receivers read.
    """
