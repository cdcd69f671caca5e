"""What the config tests share: a provider that runs a test's code while a file naming it is
being checked (the moment between reading a file and applying or writing it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import ClassVar

import pytest

from pipecored import OutboundMessage, Provider, SendContext, SendResult
from pipecored.plugins import LoadedProviders


class ProbeProvider(Provider):
    """Its credential fields are read when a tenant file naming it is checked; each callable
    in ``during_check`` runs once at that moment."""

    name = "probe"
    channels = frozenset({"sms"})
    during_check: ClassVar[list[Callable[[], None]]] = []

    @property  # type: ignore[misc]
    def credentials(self) -> tuple[()]:  # type: ignore[override]
        while self.during_check:
            self.during_check.pop()()
        return ()

    async def send(self, message: OutboundMessage, ctx: SendContext) -> SendResult:
        raise NotImplementedError


@pytest.fixture
def probe() -> Iterator[type[ProbeProvider]]:
    yield ProbeProvider
    ProbeProvider.during_check.clear()


@pytest.fixture
def all_providers(providers: LoadedProviders) -> dict[str, Provider]:
    """The real providers and the probe."""
    return {**providers, "probe": ProbeProvider()}
