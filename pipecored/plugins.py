"""The plugin host: load the ``pipecored`` entry-point group once and collect providers.

Alert receivers are collected by :mod:`pipecored.alerts.dispatcher`, their host.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pluggy

from pipecored import hookspecs
from pipecored.errors import PipecoreError
from pipecored.provider import Provider

ENTRY_POINT_GROUP = "pipecored"


@dataclass(frozen=True)
class LoadedProvider:
    provider: Provider
    distribution: str  # the distribution that brought it, as "name version"


class LoadedProviders(Mapping[str, Provider]):
    """Providers by name, with the distribution that brought each."""

    def __init__(self, loaded: Mapping[str, LoadedProvider]) -> None:
        self._loaded = dict(loaded)

    def __getitem__(self, name: str) -> Provider:
        return self._loaded[name].provider

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded)

    def __len__(self) -> int:
        return len(self._loaded)

    def distribution(self, name: str) -> str:
        return self._loaded[name].distribution


def get_plugin_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("pipecored")
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    pm.check_pending()
    return pm


def distribution_of(pm: pluggy.PluginManager, plugin: object) -> str:
    """The distribution that brought ``plugin``, as "name version", for error messages."""
    for loaded, dist in pm.list_plugin_distinfo():
        if loaded is plugin:
            return f"{dist.project_name} {dist.version}"
    return "(registered in process)"


def collect_providers(pm: pluggy.PluginManager) -> LoadedProviders:
    loaded: dict[str, LoadedProvider] = {}
    for plugin in pm.get_plugins():
        impl = getattr(plugin, "register_providers", None)
        if impl is None:
            continue
        found: list[Provider] = []
        impl(register=found.append)
        distribution = distribution_of(pm, plugin)
        for provider in found:
            if not isinstance(provider, Provider):
                raise PipecoreError(
                    f"{distribution} registered {provider!r}, which is not a pipecored.Provider"
                )
            if provider.name in loaded:
                raise PipecoreError(
                    f"provider name {provider.name!r} is registered by both "
                    f"{loaded[provider.name].distribution} and {distribution}"
                )
            loaded[provider.name] = LoadedProvider(provider, distribution)
    return LoadedProviders(dict(sorted(loaded.items())))


def load_providers() -> LoadedProviders:
    return collect_providers(get_plugin_manager())
