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
