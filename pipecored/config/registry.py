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
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from pipecored.config.loader import (
    ADMIN_KEY_TAKEN,
    DAEMON_FILE,
    TENANT_KEY_TAKEN,
    TENANT_SUFFIX,
    TENANTS_DIR,
    key_conflicts,
    load_daemon_config,
    load_tenant_file,
    tenant_display,
    tenant_files,
    tenant_id_of,
)
from pipecored.config.model import RESTART_KEYS, DaemonConfig, TenantConfig, api_key_digest
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
        # sha256 of each file as last read, so that sync() reparses only what changed.
        self._digests: dict[Path, bytes | None] = {}
        # Per tenant: its key digests and secret values, with the config they were computed
        # from. A reload then recomputes one tenant's, not ten thousand.
        self._derived: dict[str, tuple[TenantConfig, tuple[bytes, ...], frozenset[str]]] = {}

    @property
    def env(self) -> Mapping[str, str]:
        return os.environ if self._env is None else self._env

    def load(self) -> None:
        """Initial load. An invalid ``pipecored.yaml`` is fatal; an invalid tenant file is not."""
        self._remember(self.config_dir / DAEMON_FILE)
        daemon = load_daemon_config(self.config_dir, env=self.env, providers=self.providers)
        tenants: dict[str, TenantEntry] = {}
        taken = {api_key_digest(k) for k in daemon.auth.admin_keys}
        for path in tenant_files(self.config_dir):
            # In file-name order, so of two files holding the same key the first one keeps it.
            entry = self._parse_tenant(path, previous=None, taken=taken)
            tenants[entry.tenant_id] = entry
            if entry.config is not None:
                taken.update(api_key_digest(k) for k in entry.config.api_keys)
        self._swap(daemon, tenants)
        self.loaded = True
        self._notify(all(e.error is None for e in tenants.values()))

    # -- reloads -------------------------------------------------------------------------------

    def path_changed(self, path: Path) -> None:
        """React to a change of one path under the config dir (as a watcher reports it)."""
        tenants = self.config_dir / TENANTS_DIR
        if path.name == DAEMON_FILE and path.parent == self.config_dir:
            self.reload_daemon()
        elif (
            path.parent == tenants
            and path.name.endswith(TENANT_SUFFIX)
            and not path.name.startswith(".")
        ):
            self.reload_tenant(tenant_id_of(path))
        elif path in (self.config_dir, tenants) or path.is_dir() or path.is_symlink():
            # A directory or a symlink changed, not a file: tenants/ renamed over by a deploy,
            # or Kubernetes swapping a mounted ConfigMap's ..data link. The events then name
            # no config file at all, so the whole dir is compared with what is live. (Plain
            # files that are not config, such as the SQLite database and editor swap files,
            # change often and need nothing.)
            self.sync()

    def sync(self) -> None:
        """Bring the live configuration in line with the dir as it is now: reload each file
        whose bytes changed since it was last read, and remove tenants whose file is gone."""
        daemon_path = self.config_dir / DAEMON_FILE
        if _digest(daemon_path) != self._digests.get(daemon_path):
            self.reload_daemon()
        on_disk = {tenant_id_of(p): p for p in tenant_files(self.config_dir)}
        for tenant_id in sorted(set(self.snapshot.tenants) - set(on_disk)):
            self.reload_tenant(tenant_id)
        for tenant_id, path in on_disk.items():
            if tenant_id not in self.snapshot.tenants or _digest(path) != self._digests.get(path):
                self.reload_tenant(tenant_id)

    def reload_tenant(self, tenant_id: str) -> TenantEntry | None:
        path = self.config_dir / TENANTS_DIR / f"{tenant_id}{TENANT_SUFFIX}"
        current = dict(self.snapshot.tenants)
        if not path.exists():
            self._digests.pop(path, None)
            self._derived.pop(tenant_id, None)
            if current.pop(tenant_id, None) is not None:
                self._swap(self.snapshot.daemon, current)
                log.info("config.tenant_removed", tenant=tenant_id)
                for listener in self.removed_listeners:
                    listener(tenant_id)
                self._notify(True)
            return None
        others = {k: v for k, v in current.items() if k != tenant_id}
        entry = self._parse_tenant(
            path,
            previous=current.get(tenant_id),
            taken=self._keys_of(self.snapshot.daemon, others),
        )
        current[tenant_id] = entry
        self._swap(self.snapshot.daemon, current)
        if entry.error is None:
            log.info("config.tenant_loaded", tenant=tenant_id)
        self._notify(entry.error is None)
        return entry

    def reload_daemon(self) -> list[str]:
        """Apply ``pipecored.yaml``; returns the changed keys that only a restart applies (their
        old values stay in use). An invalid file keeps the old settings whole."""
        old = self.snapshot.daemon
        self._remember(self.config_dir / DAEMON_FILE)
        try:
            new = load_daemon_config(self.config_dir, env=self.env, providers=self.providers)
            conflicts = key_conflicts(
                new.auth.admin_keys,
                self._keys_of(DaemonConfig(), self.snapshot.tenants),
                display=DAEMON_FILE,
                path="auth.adminKeys",
                message=ADMIN_KEY_TAKEN,
            )
            if conflicts:
                raise ConfigError(conflicts)
        except ConfigError as exc:
            log.error("config.reload_failed", file=DAEMON_FILE, errors=[str(i) for i in exc.issues])
            self._notify(False)
            return []
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
        return needs_restart

    def _parse_tenant(
        self, path: Path, *, previous: TenantEntry | None, taken: Collection[bytes]
    ) -> TenantEntry:
        """``taken``: the keys that other tenants and the admins hold."""
        tenant_id = tenant_id_of(path)
        self._remember(path)
        try:
            config = load_tenant_file(path, providers=self.providers, env=self.env)
            conflicts = key_conflicts(
                config.api_keys,
                taken,
                display=tenant_display(path),
                path="apiKeys",
                message=TENANT_KEY_TAKEN,
            )
            if conflicts:
                raise ConfigError(conflicts)
        except ConfigError as exc:
            log.error(
                "config.tenant_invalid",
                tenant=tenant_id,
                errors=[str(i) for i in exc.issues],
                kept_last_good=previous is not None and previous.config is not None,
            )
            return TenantEntry(tenant_id, previous.config if previous else None, exc)
        for channel, settings in config.channels.items():
            if not settings.verify_webhook_signatures:
                log.warning(
                    "config.webhook_signatures_not_verified",
                    tenant=tenant_id,
                    channel=channel,
                    note="anyone can forge its delivery callbacks; for local development only",
                )
        return TenantEntry(tenant_id, config, None)

    def _remember(self, path: Path) -> None:
        # Read before the file is parsed: if it changes in between, the stored digest is the
        # older one, so the next sync() reparses rather than missing the change.
        self._digests[path] = _digest(path)

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
        # The first owner of a key keeps it (admins first): a key that slipped past the parse-time
        # check (replace_tenant) must never let one tenant act as another, or as an admin.
        for key in daemon.auth.admin_keys:
            keys[api_key_digest(key)] = ADMIN
            secrets.add(key)
        for tenant_id, entry in tenants.items():
            if entry.config is None:
                continue
            digests, values = self._derive(tenant_id, entry.config)
            for digest in digests:
                keys.setdefault(digest, tenant_id)
            secrets.update(values)
        for hook in daemon.alerts.webhooks:
            if hook.secret:
                secrets.add(hook.secret)
        secrets.discard("")
        self.snapshot = ConfigSnapshot(daemon, tenants, keys, frozenset(secrets))

    def _derive(
        self, tenant_id: str, config: TenantConfig
    ) -> tuple[tuple[bytes, ...], frozenset[str]]:
        cached = self._derived.get(tenant_id)
        if cached is None or cached[0] is not config:
            digests = tuple(api_key_digest(k) for k in config.api_keys)
            secrets = frozenset(self.secret_values(config) | set(config.api_keys))
            cached = (config, digests, secrets)
            self._derived[tenant_id] = cached
        return cached[1], cached[2]

    def _keys_of(self, daemon: DaemonConfig, tenants: Mapping[str, TenantEntry]) -> set[bytes]:
        """Every key in use (as digests): the admin keys and the tenants' live API keys."""
        keys = {api_key_digest(k) for k in daemon.auth.admin_keys}
        for tenant_id, entry in tenants.items():
            if entry.config is not None:
                keys.update(self._derive(tenant_id, entry.config)[0])
        return keys

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


def _digest(path: Path) -> bytes | None:
    try:
        return hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return None


def _get(config: DaemonConfig, dotted: str) -> object:
    value: object = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value
