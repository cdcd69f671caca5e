"""The live configuration: the last good version of every file, swapped in one step.

A request or a delivery takes ``registry.snapshot`` once and uses it throughout, so it never sees
a half-applied change. A reload parses and checks a file completely before anything is swapped;
an invalid file keeps the last good version of that tenant (or of the daemon's settings) and the
error is kept beside it, for ``GET /messaging/config/{tenant}`` to show.

A reload has two steps. Reading (:meth:`TenantRegistry.read_change`) reads and parses files and
touches nothing live, so the watcher runs it in a thread: a slow or huge file must not stall the
event loop. Applying (:meth:`TenantRegistry.apply`) checks keys against what is live and swaps,
on the loop. Every path that changes the live configuration (start-up, a reload, the config
API's write) goes through the same key check: a key names exactly one principal, and a key that
somehow has two owners authenticates neither.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import structlog

from pipecored.config.loader import (
    ADMIN_KEY_TAKEN,
    DAEMON_FILE,
    TENANT_KEY_TAKEN,
    TENANT_SUFFIX,
    TENANTS_DIR,
    credential_warnings,
    decode_config,
    key_conflicts,
    parse_daemon_config,
    parse_tenant,
    parse_yaml,
    read_config_bytes,
    tenant_display,
    tenant_files,
    tenant_id_of,
)
from pipecored.config.model import RESTART_KEYS, DaemonConfig, TenantConfig, api_key_digest
from pipecored.errors import ConfigError, TenantConfigInvalid
from pipecored.provider import Provider

log = structlog.get_logger("pipecored.config")

ADMIN = "*"


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def key_identity(digest: bytes) -> str:
    """How logs name a key without holding it: the first 8 hex digits of its SHA-256."""
    return f"sha256:{digest.hex()[:8]}"


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


@dataclass(frozen=True, slots=True)
class FileRead:
    """One config file as read and parsed, not yet applied."""

    path: Path
    generation: int  # the registry's generation when the read began (see apply)
    digest: bytes | None  # sha256 of the bytes parsed; None when they could not be read
    # the parsed file; a ConfigError when invalid; None when the file is gone
    result: TenantConfig | DaemonConfig | ConfigError | None


ReloadListener = Callable[[bool], None]  # called with success after each reload attempt

# ``unless=`` of a file never read: whatever its digest, it is read
_UNREAD = object()


class _HeldByOthers(Collection[bytes]):
    """The live keys that belong to anyone but ``owner`` (as digests), without copying the
    index: ``key_conflicts`` only asks whether a digest is in it."""

    def __init__(self, keys: Mapping[bytes, str], owner: str) -> None:
        self._keys = keys
        self._owner = owner

    def __contains__(self, digest: object) -> bool:
        holder = self._keys.get(digest) if isinstance(digest, bytes) else None
        return holder is not None and holder != self._owner

    def __iter__(self) -> Iterator[bytes]:
        return (digest for digest, holder in self._keys.items() if holder != self._owner)

    def __len__(self) -> int:
        return sum(1 for _ in self)


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
        # Valid files kept out only because a key they hold is live elsewhere. Each is checked
        # again whenever the live configuration changes: a file renamed (gamma.yaml ->
        # agamma.yaml: the new name is read while the old one still holds the keys) or a key
        # moved from one file to another settles on its own.
        self._held: dict[str, TenantConfig] = {}
        self._held_daemon: DaemonConfig | None = None
        # Reads run in a thread while the loop applies other changes: a read that began before
        # a newer version of its file was applied (the config API's write) is stale.
        self._generation = 0
        self._applied_at: dict[Path, int] = {}

    @property
    def env(self) -> Mapping[str, str]:
        return os.environ if self._env is None else self._env

    def load(self) -> None:
        """Initial load. An invalid ``pipecored.yaml`` is fatal; an invalid tenant file is not.

        A key that two tenant files hold (or a tenant file and the admins) belongs to neither
        file: both are refused and held (see ``_held``) until one of them lets it go. With no
        live configuration yet to say which came first, no file order may decide who it is."""
        daemon_read = self._read_daemon()
        if isinstance(daemon_read.result, ConfigError):
            raise daemon_read.result
        assert isinstance(daemon_read.result, DaemonConfig)
        daemon = daemon_read.result
        self._digests[daemon_read.path] = daemon_read.digest
        reads: dict[str, TenantConfig | ConfigError] = {}
        for path in tenant_files(self.config_dir):
            read = self._read_tenant(path)
            if read.result is None:  # removed since it was listed
                continue
            assert not isinstance(read.result, DaemonConfig)
            self._digests[path] = read.digest
            reads[tenant_id_of(path)] = read.result
        claims: dict[bytes, int] = dict.fromkeys(
            (api_key_digest(k) for k in daemon.auth.admin_keys), 1
        )
        for result in reads.values():
            if isinstance(result, TenantConfig):
                for digest in {api_key_digest(k) for k in result.api_keys}:
                    claims[digest] = claims.get(digest, 0) + 1
        tenants: dict[str, TenantEntry] = {}
        for tenant_id, result in reads.items():
            own = (
                {api_key_digest(k) for k in result.api_keys}
                if isinstance(result, TenantConfig)
                else set()
            )
            # every key someone else claims: a tenant file's own keys count once for it
            taken = {d for d in own if claims[d] > 1}
            tenants[tenant_id] = self._tenant_entry(tenant_id, result, previous=None, taken=taken)
        self._swap(daemon, tenants)
        self.loaded = True
        self._notify(all(e.error is None for e in tenants.values()))

    # -- reading (any thread) ------------------------------------------------------------------

    def read_change(self, path: Path) -> list[FileRead]:
        """Read what a change of one path under the config dir (as a watcher reports it) asks
        to reload. Nothing live changes: :meth:`apply` the result."""
        tenants = self.config_dir / TENANTS_DIR
        if path.name == DAEMON_FILE and path.parent == self.config_dir:
            return [self._read_daemon()]
        if (
            path.parent == tenants
            and path.name.endswith(TENANT_SUFFIX)
            and not path.name.startswith(".")
        ):
            # Bytes already applied (the config API's own write, which it swapped in itself,
            # or an event repeated) are not a change: reloading them would count reloads
            # nobody made (one API write counted three).
            tenant_id = tenant_id_of(path)
            known = self._digests.get(path) if tenant_id in self.snapshot.tenants else _UNREAD
            read = self._read_tenant_unless(path, known)
            return [] if read is None else [read]
        if path in (self.config_dir, tenants) or path.is_dir() or path.is_symlink():
            # A directory or a symlink changed, not a file: tenants/ renamed over by a deploy,
            # or Kubernetes swapping a mounted ConfigMap's ..data link. The events then name
            # no config file at all, so the whole dir is compared with what is live. (Plain
            # files that are not config, such as the SQLite database and editor swap files,
            # change often and need nothing.)
            return self.read_all_changed()
        return []

    def read_all_changed(self) -> list[FileRead]:
        """Read every file whose bytes changed since it was last read, and every tenant whose
        file is gone."""
        reads: list[FileRead] = []
        daemon = self._read_daemon_unless(self._digests.get(self.config_dir / DAEMON_FILE))
        if daemon is not None:
            reads.append(daemon)
        on_disk = {tenant_id_of(p): p for p in tenant_files(self.config_dir)}
        for tenant_id in sorted(set(self.snapshot.tenants) - set(on_disk)):
            reads.append(self._read_tenant(self._tenant_path(tenant_id)))
        for tenant_id, path in on_disk.items():
            known = self._digests.get(path) if tenant_id in self.snapshot.tenants else _UNREAD
            read = self._read_tenant_unless(path, known)
            if read is not None:
                reads.append(read)
        return reads

    def _tenant_path(self, tenant_id: str) -> Path:
        return self.config_dir / TENANTS_DIR / f"{tenant_id}{TENANT_SUFFIX}"

    def _read_tenant(self, path: Path) -> FileRead:
        read = self._read_tenant_unless(path, _UNREAD)
        assert read is not None
        return read

    def _read_tenant_unless(self, path: Path, unless: object) -> FileRead | None:
        """The file read and parsed; None when the digest of its bytes is ``unless``."""
        generation = self._generation
        if not path.exists():
            return FileRead(path, generation, None, None)
        display = tenant_display(path)
        try:
            # the digest is of the very bytes parsed: a change made meanwhile is seen by sync()
            data, digest = _read_with_digest(path, display)
        except ConfigError as exc:
            return None if unless is None else FileRead(path, generation, None, exc)
        if digest == unless:
            return None
        try:
            config = parse_tenant(
                parse_yaml(decode_config(data, display=display), display=display),
                tenant_id=tenant_id_of(path),
                providers=self.providers,
                env=self.env,
                display=display,
            )
        except ConfigError as exc:
            return FileRead(path, generation, digest, exc)
        return FileRead(path, generation, digest, config)

    def _read_daemon(self) -> FileRead:
        read = self._read_daemon_unless(_UNREAD)
        assert read is not None
        return read

    def _read_daemon_unless(self, unless: object) -> FileRead | None:
        path = self.config_dir / DAEMON_FILE
        generation = self._generation
        if not path.exists():
            return None if unless is None else FileRead(path, generation, None, DaemonConfig())
        try:
            data, digest = _read_with_digest(path, DAEMON_FILE)
        except ConfigError as exc:
            return None if unless is None else FileRead(path, generation, None, exc)
        if digest == unless:
            return None
        try:
            daemon = parse_daemon_config(
                parse_yaml(decode_config(data, display=DAEMON_FILE), display=DAEMON_FILE),
                env=self.env,
                display=DAEMON_FILE,
                providers=self.providers,
            )
        except ConfigError as exc:
            return FileRead(path, generation, digest, exc)
        return FileRead(path, generation, digest, daemon)

    # -- applying (the event loop) -------------------------------------------------------------

    def apply(self, reads: Iterable[FileRead]) -> None:
        """Make what was read live. Removals first, so that a renamed file's keys are free when
        its new name is applied."""
        for read in sorted(reads, key=lambda r: r.result is not None):
            try:
                if read.path.name == DAEMON_FILE:
                    self._apply_daemon(read)
                else:
                    self._apply_tenant(read)
            except Exception:
                # one file's failure must not keep the others of the batch out
                log.exception("config.reload_crashed", path=str(read.path))

    def path_changed(self, path: Path) -> None:
        """React to a change of one path under the config dir, read and applied here."""
        self.apply(self.read_change(path))

    def sync(self) -> None:
        """Bring the live configuration in line with the dir as it is now: reload each file
        whose bytes changed since it was last read, and remove tenants whose file is gone."""
        self.apply(self.read_all_changed())

    def reload_tenant(self, tenant_id: str) -> TenantEntry | None:
        return self._apply_tenant(self._read_tenant(self._tenant_path(tenant_id)))

    def reload_daemon(self) -> list[str]:
        """Apply ``pipecored.yaml``; returns the changed keys that only a restart applies (their
        old values stay in use). An invalid file keeps the old settings whole."""
        return self._apply_daemon(self._read_daemon())

    def _is_stale(self, read: FileRead) -> bool:
        return self._applied_at.get(read.path, -1) > read.generation

    def _mark_applied(self, path: Path) -> None:
        self._generation += 1
        self._applied_at[path] = self._generation

    def _apply_tenant(self, read: FileRead) -> TenantEntry | None:
        tenant_id = tenant_id_of(read.path)
        if self._is_stale(read):
            return self.snapshot.tenants.get(tenant_id)
        self._mark_applied(read.path)
        current = dict(self.snapshot.tenants)
        if read.result is None:
            self._digests.pop(read.path, None)
            self._derived.pop(tenant_id, None)
            self._held.pop(tenant_id, None)
            if current.pop(tenant_id, None) is not None:
                self._swap(self.snapshot.daemon, current)
                log.info("config.tenant_removed", tenant=tenant_id)
                for listener in self.removed_listeners:
                    listener(tenant_id)
                self._notify(True)
                self._settle_held()
            return None
        self._digests[read.path] = read.digest
        assert not isinstance(read.result, DaemonConfig)
        entry = self._tenant_entry(
            tenant_id,
            read.result,
            previous=current.get(tenant_id),
            taken=_HeldByOthers(self.snapshot.keys, tenant_id),
        )
        current[tenant_id] = entry
        self._swap(self.snapshot.daemon, current)
        if entry.error is None:
            log.info("config.tenant_loaded", tenant=tenant_id)
        self._notify(entry.error is None)
        self._settle_held()
        return entry

    def _tenant_entry(
        self,
        tenant_id: str,
        result: TenantConfig | ConfigError,
        *,
        previous: TenantEntry | None,
        taken: Collection[bytes],
    ) -> TenantEntry:
        """The entry for a file just read. ``taken``: the keys that other tenants and the
        admins hold; a file holding one of them is kept out (and held, see ``_held``)."""
        self._held.pop(tenant_id, None)
        last_good = previous.config if previous is not None else None
        if isinstance(result, TenantConfig):
            conflicts = key_conflicts(
                result.api_keys,
                taken,
                display=tenant_display(self._tenant_path(tenant_id)),
                path="apiKeys",
                message=TENANT_KEY_TAKEN,
            )
            if not conflicts:
                self._warn_unverified_webhooks(tenant_id, result)
                return TenantEntry(tenant_id, result, None)
            self._held[tenant_id] = result
            result = ConfigError(conflicts)
        log.error(
            "config.tenant_invalid",
            tenant=tenant_id,
            errors=[str(i) for i in result.issues],
            kept_last_good=last_good is not None,
        )
        return TenantEntry(tenant_id, last_good, result)

    def _warn_unverified_webhooks(self, tenant_id: str, config: TenantConfig) -> None:
        display = f"tenants/{tenant_id}.yaml"
        for warning in credential_warnings(config, self.providers, display=display):
            log.warning("config.credential_warning", tenant=tenant_id, warning=str(warning))
        for channel, settings in config.channels.items():
            if not settings.verify_webhook_signatures:
                log.warning(
                    "config.webhook_signatures_not_verified",
                    tenant=tenant_id,
                    channel=channel,
                    note="anyone can forge its delivery callbacks; for local development only",
                )

    def _apply_daemon(self, read: FileRead) -> list[str]:
        if self._is_stale(read):
            return []
        self._mark_applied(read.path)
        self._digests[read.path] = read.digest
        self._held_daemon = None
        new = read.result
        if isinstance(new, DaemonConfig):
            conflicts = key_conflicts(
                new.auth.admin_keys,
                _HeldByOthers(self.snapshot.keys, ADMIN),
                display=DAEMON_FILE,
                path="auth.adminKeys",
                message=ADMIN_KEY_TAKEN,
            )
            if not conflicts:
                return self._install_daemon(new)
            self._held_daemon = new
            new = ConfigError(conflicts)
        assert isinstance(new, ConfigError)
        log.error("config.reload_failed", file=DAEMON_FILE, errors=[str(i) for i in new.issues])
        self._notify(False)
        return []

    def _install_daemon(self, new: DaemonConfig, *, settle: bool = True) -> list[str]:
        old = self.snapshot.daemon
        needs_restart = [k for k in RESTART_KEYS if _get(new, k) != _get(old, k)]
        if needs_restart:
            log.warning("config.restart_required", keys=needs_restart)
            new = new.model_copy(
                update={
                    "store": old.store,
                    "store_pool": old.store_pool,
                    "store_retention": old.store_retention,
                    "config_watch": old.config_watch,
                    "server": new.server.model_copy(
                        update={"host": old.server.host, "port": old.server.port}
                    ),
                }
            )
        self._swap(new, dict(self.snapshot.tenants))
        log.info("config.daemon_reloaded")
        self._notify(True)
        if settle:
            self._settle_held()
        return needs_restart

    def _settle_held(self) -> None:
        """Apply each held file whose keys are now free: live for no one else, and claimed by
        no other held file (no file is read again: a held file that changes on disk is read
        like any other)."""
        settled = True
        while settled and (self._held or self._held_daemon is not None):
            settled = False
            for tenant_id in sorted(self._held):
                config = self._held[tenant_id]
                if not self._keys_free(tenant_id, config.api_keys):
                    continue
                del self._held[tenant_id]
                current = dict(self.snapshot.tenants)
                current[tenant_id] = TenantEntry(tenant_id, config, None)
                self._swap(self.snapshot.daemon, current)
                log.info("config.tenant_loaded", tenant=tenant_id, note="its keys are free now")
                self._notify(True)
                settled = True
            held_daemon = self._held_daemon
            if held_daemon is not None and self._keys_free(ADMIN, held_daemon.auth.admin_keys):
                self._held_daemon = None
                self._install_daemon(held_daemon, settle=False)
                settled = True

    def _keys_free(self, owner: str, keys: Iterable[str]) -> bool:
        live = _HeldByOthers(self.snapshot.keys, owner)
        claimed = {
            api_key_digest(k)
            for tenant_id, config in self._held.items()
            if tenant_id != owner
            for k in config.api_keys
        }
        if owner != ADMIN and self._held_daemon is not None:
            claimed.update(api_key_digest(k) for k in self._held_daemon.auth.admin_keys)
        return not any((d := api_key_digest(k)) in live or d in claimed for k in keys)

    def replace_tenant(self, tenant_id: str, config: TenantConfig) -> None:
        """Swap in a tenant that was just validated and written (the config API), under the
        same key check as a reload: a file that holds another principal's key stays out, and
        the write is answered ``409 tenant_config_invalid``."""
        path = self._tenant_path(tenant_id)
        self._mark_applied(path)  # a read of the file that began before this is stale
        try:
            # the watcher will see this write: with its digest known, it is not a change
            self._digests[path] = _read_with_digest(path, tenant_display(path))[1]
        except ConfigError:
            self._digests.pop(path, None)
        previous = self.snapshot.tenants.get(tenant_id)
        entry = self._tenant_entry(
            tenant_id,
            config,
            previous=previous,
            taken=_HeldByOthers(self.snapshot.keys, tenant_id),
        )
        current = dict(self.snapshot.tenants)
        current[tenant_id] = entry
        self._swap(self.snapshot.daemon, current)
        self._notify(entry.error is None)
        if entry.error is not None:
            issue = entry.error.issues[0]
            raise TenantConfigInvalid(
                f"tenant {tenant_id!r}: {issue}; the file was written but is not in use until "
                "that is fixed"
            )
        self._settle_held()

    # -- the swap ------------------------------------------------------------------------------

    def _swap(self, daemon: DaemonConfig, tenants: dict[str, TenantEntry]) -> None:
        keys: dict[bytes, str] = {}
        shared: set[bytes] = set()
        secrets: set[str] = set()
        for key in daemon.auth.admin_keys:
            keys[api_key_digest(key)] = ADMIN
            secrets.add(key)
        for tenant_id, entry in tenants.items():
            if entry.config is None:
                continue
            digests, values = self._derive(tenant_id, entry.config)
            for digest in digests:
                if keys.setdefault(digest, tenant_id) != tenant_id:
                    shared.add(digest)
            secrets.update(values)
        # Every path in checks keys before it swaps, so this never happens; if it did, no owner
        # of a shared key may use it: either could otherwise act as the other, or as an admin.
        for digest in shared:
            del keys[digest]
        if shared:
            log.error("config.shared_keys_refused", keys=[key_identity(d) for d in shared])
        for hook in daemon.alerts.webhooks:
            if hook.secret:
                secrets.add(hook.secret)
        # a PostgreSQL URL's password (postgresql://user:password@host/db)
        password = urlsplit(daemon.store).password
        if password:
            secrets.add(unquote(password))
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

    def keys_of_others(self, tenant_id: str) -> Collection[bytes]:
        """The live keys (as digests) of everyone but ``tenant_id``: what a file written for
        that tenant may not hold (``update_channel(taken_keys=...)``)."""
        return frozenset(_HeldByOthers(self.snapshot.keys, tenant_id))

    def secret_values(self, tenant: TenantConfig) -> set[str]:
        values: set[str] = set()
        for channel in tenant.channels.values():
            for route in channel.routes:
                provider = self.providers.get(route.provider)
                names = provider.secret_names() if provider else set(route.credentials)
                values.update(v for k, v in route.credentials.items() if k in names)
        values.update(hook.secret for hook in tenant.webhooks)
        return values

    def _notify(self, success: bool) -> None:
        if success:
            self.last_success = time.time()
        for listener in self.listeners:
            listener(success)


def _read_with_digest(path: Path, display: str) -> tuple[bytes, bytes]:
    data = read_config_bytes(path, display=display)
    return data, hashlib.sha256(data).digest()


def _get(config: DaemonConfig, dotted: str) -> object:
    value: object = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value
