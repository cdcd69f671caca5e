"""The live configuration: the last good version of every file, swapped in one step.

A request or a delivery takes ``registry.snapshot`` once and uses it throughout, so it never sees
a half-applied change. A reload parses and checks a file completely before anything is swapped;
an invalid file keeps the last good version of that tenant (or of the daemon's settings) and the
error is kept beside it, for ``GET /messaging/config/{tenant}`` to show.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from pipecored.config.loader import (
    DAEMON_FILE,
    TENANT_SUFFIX,
    TENANTS_DIR,
    load_daemon_config,
    load_tenant_file,
    tenant_files,
    tenant_id_of,
)
from pipecored.config.model import RESTART_KEYS, DaemonConfig, TenantConfig
from pipecored.errors import ConfigError
from pipecored.provider import Provider

log = structlog.get_logger("pipecored.config")

ADMIN = "*"


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class TenantEntry:
    tenant_id: str
    config: TenantConfig | None  # the last good version; None if the file was never valid
    error: ConfigError | None = None  # why the file on disk is not in use, if it is not


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    daemon: DaemonConfig
    tenants: Mapping[str, TenantEntry]
    keys: Mapping[bytes, str]  # sha256(key) -> tenant id, or ADMIN
    secrets: frozenset[str] = field(default_factory=frozenset)

    def tenant(self, tenant_id: str) -> TenantConfig | None:
        entry = self.tenants.get(tenant_id)
        return entry.config if entry is not None else None


ReloadListener = Callable[[bool], None]  # called with success after each reload attempt


class TenantRegistry:
    def __init__(
        self,
        config_dir: Path,
        providers: Mapping[str, Provider],
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config_dir = config_dir
        self.providers = providers
        self._env = env
        self.snapshot = ConfigSnapshot(DaemonConfig(), {}, {})
        self.listeners: list[ReloadListener] = []
        self.last_success: float | None = None
        self.loaded = False
        self.removed_listeners: list[Callable[[str], None]] = []

    @property
    def env(self) -> Mapping[str, str]:
        return os.environ if self._env is None else self._env

    def load(self) -> None:
        """Initial load. An invalid ``pipecored.yaml`` is fatal; an invalid tenant file is not."""
        daemon = load_daemon_config(self.config_dir, env=self.env)
        tenants: dict[str, TenantEntry] = {}
        for path in tenant_files(self.config_dir):
            entry = self._parse_tenant(path, previous=None)
            tenants[entry.tenant_id] = entry
        self._swap(daemon, tenants)
        self.loaded = True
        self._notify(all(e.error is None for e in tenants.values()))

    # -- reloads -------------------------------------------------------------------------------

    def path_changed(self, path: Path) -> None:
        """React to a change of one path under the config dir (as a watcher reports it)."""
        if path.name == DAEMON_FILE and path.parent == self.config_dir:
            self.reload_daemon()
        elif (
            path.parent == self.config_dir / TENANTS_DIR
            and path.name.endswith(TENANT_SUFFIX)
            and not path.name.startswith(".")
        ):
            self.reload_tenant(tenant_id_of(path))

    def reload_tenant(self, tenant_id: str) -> TenantEntry | None:
        path = self.config_dir / TENANTS_DIR / f"{tenant_id}{TENANT_SUFFIX}"
        current = dict(self.snapshot.tenants)
        if not path.exists():
            if current.pop(tenant_id, None) is not None:
                self._swap(self.snapshot.daemon, current)
                log.info("config.tenant_removed", tenant=tenant_id)
                for listener in self.removed_listeners:
                    listener(tenant_id)
                self._notify(True)
            return None
        entry = self._parse_tenant(path, previous=current.get(tenant_id))
        current[tenant_id] = entry
        self._swap(self.snapshot.daemon, current)
        if entry.error is None:
            log.info("config.tenant_loaded", tenant=tenant_id)
        self._notify(entry.error is None)
        return entry

    def reload_daemon(self) -> None:
        old = self.snapshot.daemon
        try:
            new = load_daemon_config(self.config_dir, env=self.env)
        except ConfigError as exc:
            log.error("config.reload_failed", file=DAEMON_FILE, errors=[str(i) for i in exc.issues])
            self._notify(False)
            return
        needs_restart = [k for k in RESTART_KEYS if _get(new, k) != _get(old, k)]
        if needs_restart:
            log.warning("config.restart_required", keys=needs_restart)
            new = new.model_copy(
                update={
                    "store": old.store,
                    "server": new.server.model_copy(
                        update={"host": old.server.host, "port": old.server.port}
                    ),
                }
            )
        self._swap(new, dict(self.snapshot.tenants))
        log.info("config.daemon_reloaded")
        self._notify(True)

    def _parse_tenant(self, path: Path, *, previous: TenantEntry | None) -> TenantEntry:
        tenant_id = tenant_id_of(path)
        try:
            config = load_tenant_file(path, providers=self.providers, env=self.env)
        except ConfigError as exc:
            log.error(
                "config.tenant_invalid",
                tenant=tenant_id,
                errors=[str(i) for i in exc.issues],
                kept_last_good=previous is not None and previous.config is not None,
            )
            return TenantEntry(tenant_id, previous.config if previous else None, exc)
        return TenantEntry(tenant_id, config, None)

    def replace_tenant(self, tenant_id: str, config: TenantConfig) -> None:
        """Swap in a tenant that was just validated and written (the config API)."""
        current = dict(self.snapshot.tenants)
        current[tenant_id] = TenantEntry(tenant_id, config, None)
        self._swap(self.snapshot.daemon, current)
        self._notify(True)

    # -- the swap ------------------------------------------------------------------------------

    def _swap(self, daemon: DaemonConfig, tenants: dict[str, TenantEntry]) -> None:
        keys: dict[bytes, str] = {}
        secrets: set[str] = set()
        for tenant_id, entry in tenants.items():
            if entry.config is None:
                continue
            for key in entry.config.api_keys:
                keys[key_digest(key)] = tenant_id
                secrets.add(key)
            secrets.update(self.secret_values(entry.config))
        for key in daemon.auth.admin_keys:
            keys[key_digest(key)] = ADMIN
            secrets.add(key)
        for hook in daemon.alerts.webhooks:
            if hook.secret:
                secrets.add(hook.secret)
        secrets.discard("")
        self.snapshot = ConfigSnapshot(daemon, tenants, keys, frozenset(secrets))

    def secret_values(self, tenant: TenantConfig) -> set[str]:
        values: set[str] = set()
        for channel in tenant.channels.values():
            for route in channel.routes:
                provider = self.providers.get(route.provider)
                names = provider.secret_names() if provider else set(route.credentials)
                values.update(v for k, v in route.credentials.items() if k in names)
        return values

    def _notify(self, success: bool) -> None:
        if success:
            self.last_success = time.time()
        for listener in self.listeners:
            listener(success)


def _get(config: DaemonConfig, dotted: str) -> object:
    value: object = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value
