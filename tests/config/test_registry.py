"""The live configuration: load, reload one file, keep the last good version, the key index,
the secrets, pipecored.yaml reloads and the reload metrics."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from pipecored.config.loader import MAX_CONFIG_BYTES
from pipecored.config.model import TenantConfig
from pipecored.config.registry import ADMIN, TenantRegistry, key_digest
from pipecored.errors import ConfigError, TenantConfigInvalid
from pipecored.metrics import Metrics
from pipecored.plugins import LoadedProviders
from tests.conftest import ConfigDir, example_config

ADMIN_KEY = "admin-key-registry-0001"
ACME_KEY = "acme-key-registry-0001"
TOKEN = "hj-token-registry-s3cr3t"
GATEWAY = "https://gw.acme.example"


def acme(name: str = "Acme", *, key: str = ACME_KEY, token: str = TOKEN) -> dict[str, Any]:
    return {
        "name": name,
        "apiKeys": [key],
        "channels": {
            "sms": {"provider": "console"},
            "email": {
                "provider": "httpjson",
                "baseUrl": GATEWAY,
                "credentials": {"token": token, "sender": "noreply@acme.example"},
            },
        },
    }


def daemon_settings(**overrides: Any) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "port": 8081},
        "store": "sqlite:///one.db",
        "auth": {"adminKeys": [ADMIN_KEY]},
        "delivery": {"maxAttempts": 3, "timeout": "2s"},
        **overrides,
    }


class Reloads:
    """A registry hooked to a fresh Metrics exactly as Gateway hooks it."""

    def __init__(self, registry: TenantRegistry) -> None:
        self.prometheus = CollectorRegistry()
        self.metrics = Metrics(self.prometheus)
        self.seen: list[bool] = []
        self.removed: list[str] = []
        registry.listeners.append(self.seen.append)
        registry.listeners.append(
            lambda ok: self.metrics.config_reloaded(ok, registry.last_success or 0.0)
        )
        registry.removed_listeners.append(self.removed.append)

    def sample(self, name: str) -> float | None:
        return self.prometheus.get_sample_value(name)

    @property
    def counts(self) -> tuple[float | None, float | None, float | None]:
        return (
            self.sample("pipecore_config_reloads_total"),
            self.sample("pipecore_config_reload_errors_total"),
            self.sample("pipecore_config_last_reload_successful"),
        )


@pytest.fixture
def cfg(tmp_path: Path) -> ConfigDir:
    root = tmp_path / "config"
    (root / "tenants").mkdir(parents=True)
    config = ConfigDir(root)
    config.write_daemon(daemon_settings())
    config.write_tenant("acme", acme())
    return config


@pytest.fixture
def registry(cfg: ConfigDir, providers: LoadedProviders) -> TenantRegistry:
    return TenantRegistry(cfg.path, providers, env={})


@pytest.fixture
def reloads(registry: TenantRegistry) -> Reloads:
    reloads = Reloads(registry)
    registry.load()
    return reloads


def test_load(registry: TenantRegistry, reloads: Reloads) -> None:
    snapshot = registry.snapshot
    tenant = snapshot.tenant("acme")
    assert tenant is not None and tenant.name == "Acme"
    assert snapshot.tenants["acme"].error is None
    assert snapshot.keys == {key_digest(ACME_KEY): "acme", key_digest(ADMIN_KEY): ADMIN}
    assert snapshot.daemon.delivery.max_attempts == 3
    assert reloads.seen == [True]
    assert reloads.counts == (1.0, 0.0, 1.0)
    assert reloads.sample("pipecore_config_last_reload_success_timestamp_seconds")


def test_secrets_are_keys_and_secret_credentials(
    registry: TenantRegistry, reloads: Reloads
) -> None:
    secrets = registry.snapshot.secrets
    assert {ACME_KEY, ADMIN_KEY, TOKEN} <= secrets
    assert "noreply@acme.example" not in secrets  # httpjson's sender is not a secret
    assert GATEWAY not in secrets


def test_the_example_config(providers: LoadedProviders, tmp_path: Path) -> None:
    config = example_config(tmp_path / "config")
    registry = TenantRegistry(config, providers, env={})
    registry.load()
    snapshot = registry.snapshot
    assert {t: e.error for t, e in snapshot.tenants.items()} == {
        "demo": None,
        "genda_456": None,
        "roe_789": None,
        "tableflow_123": None,
    }
    assert snapshot.keys[key_digest("demo-key")] == "demo"
    assert snapshot.keys[key_digest("tableflow-dev-key")] == "tableflow_123"
    assert snapshot.keys[key_digest("dev-admin-key")] == ADMIN
    assert {"set-ROE_TWILIO_TOKEN", "set-TABLEFLOW_META_APP_SECRET", "genda-dev-key"} <= (
        snapshot.secrets
    )
    # Identifiers and addresses are not secrets (so logs keep them).
    assert not {"AC00000000000000000000000000000789", "pedidos@roe.shop"} & snapshot.secrets
    tableflow = snapshot.tenant("tableflow_123")
    assert tableflow is not None
    assert [r.provider for r in tableflow.channels["whatsapp"].routes] == ["twilio", "meta"]


def test_env_comes_from_the_registry(cfg: ConfigDir, providers: LoadedProviders) -> None:
    cfg.write_tenant("acme", acme(key="${ACME_KEY}"))
    registry = TenantRegistry(cfg.path, providers, env={"ACME_KEY": "from-env"})
    registry.load()
    assert registry.snapshot.keys[key_digest("from-env")] == "acme"


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param("name: Acme\nchannels: {sms: [\n", id="invalid-yaml"),
        pytest.param("", id="empty"),
        pytest.param({**acme("Acme 2"), "apikeys": ["x"]}, id="unknown-key"),
        pytest.param(
            {**acme("Acme 2"), "channels": {"sms": {"provider": "twillio"}}}, id="unknown-provider"
        ),
        pytest.param(acme("Acme 2", token="${MISSING_TOKEN}"), id="missing-env"),
    ],
)
def test_broken_file_keeps_the_last_good_version(
    cfg: ConfigDir, registry: TenantRegistry, reloads: Reloads, broken: dict[str, Any] | str
) -> None:
    good = registry.snapshot.tenant("acme")
    cfg.write_tenant("acme", broken)
    entry = registry.reload_tenant("acme")
    assert entry is not None and entry.error is not None
    assert entry.config is good
    assert all(issue.file == "tenants/acme.yaml" for issue in entry.error.issues)
    snapshot = registry.snapshot
    assert snapshot.tenants["acme"] is entry
    assert snapshot.tenant("acme") is good
    assert snapshot.keys[key_digest(ACME_KEY)] == "acme"
    assert TOKEN in snapshot.secrets
    assert reloads.seen == [True, False]
    assert reloads.counts == (2.0, 1.0, 0.0)

    cfg.write_tenant("acme", acme("Acme Fixed"))
    fixed = registry.reload_tenant("acme")
    assert fixed is not None and fixed.error is None
    assert fixed.config is not None and fixed.config.name == "Acme Fixed"
    assert reloads.counts == (3.0, 1.0, 1.0)


def test_a_file_that_was_never_valid(
    cfg: ConfigDir, registry: TenantRegistry, reloads: Reloads
) -> None:
    cfg.write_tenant(
        "bravo",
        {"name": "Bravo", "apiKeys": ["bravo-key"], "channels": {"fax": {"provider": "console"}}},
    )
    entry = registry.reload_tenant("bravo")
    assert entry is not None and entry.config is None and entry.error is not None
    assert [str(i) for i in entry.error.issues] == [
        "tenants/bravo.yaml: channels.fax: unknown channel 'fax'"
        " (declared: chat, email, sms, whatsapp)"
    ]
    assert registry.snapshot.tenant("bravo") is None
    assert "bravo" in registry.snapshot.tenants  # known, so the config API can show the error
    assert key_digest("bravo-key") not in registry.snapshot.keys
    assert reloads.counts == (2.0, 1.0, 0.0)


def test_an_invalid_file_at_startup_does_not_stop_the_others(
    cfg: ConfigDir, providers: LoadedProviders
) -> None:
    cfg.write_tenant("bravo", "name: [")
    registry = TenantRegistry(cfg.path, providers, env={})
    reloads = Reloads(registry)
    registry.load()
    assert registry.snapshot.tenant("acme") is not None
    assert registry.snapshot.tenants["bravo"].config is None
    assert reloads.seen == [False]


def test_a_new_file_onboards_a_tenant(
    cfg: ConfigDir, registry: TenantRegistry, reloads: Reloads
) -> None:
    cfg.write_tenant("bravo", acme("Bravo", key="bravo-key", token="bravo-token"))
    registry.path_changed(cfg.path / "tenants" / "bravo.yaml")
    assert registry.snapshot.keys[key_digest("bravo-key")] == "bravo"
    assert "bravo-token" in registry.snapshot.secrets
    assert reloads.seen == [True, True]


def test_removal(cfg: ConfigDir, registry: TenantRegistry, reloads: Reloads) -> None:
    (cfg.path / "tenants" / "acme.yaml").unlink()
    assert registry.reload_tenant("acme") is None
    snapshot = registry.snapshot
    assert "acme" not in snapshot.tenants
    assert key_digest(ACME_KEY) not in snapshot.keys
    assert TOKEN not in snapshot.secrets
    assert reloads.removed == ["acme"]
    assert reloads.counts == (2.0, 0.0, 1.0)
    # Removing what is not there changes nothing and is not a reload.
    assert registry.reload_tenant("acme") is None
    assert reloads.counts == (2.0, 0.0, 1.0)


def test_a_snapshot_in_use_never_changes(cfg: ConfigDir, registry: TenantRegistry) -> None:
    registry.load()
    before = registry.snapshot
    cfg.write_tenant("acme", acme("Acme 2", key="acme-key-2"))
    registry.reload_tenant("acme")
    assert registry.snapshot is not before
    tenant = before.tenant("acme")
    assert tenant is not None and tenant.name == "Acme"
    assert before.keys[key_digest(ACME_KEY)] == "acme"
    assert registry.snapshot.keys.get(key_digest(ACME_KEY)) is None


@pytest.mark.parametrize(
    ("path", "reloaded"),
    [
        pytest.param("pipecored.yaml", True, id="daemon-file"),
        # an event for a tenant file whose bytes are those already live reloads nothing
        pytest.param("tenants/acme.yaml", False, id="tenant-file-unchanged"),
        pytest.param("tenants/.acme.yaml.swp", False, id="editor-swap-file"),
        pytest.param("tenants/acme.yaml~", False, id="editor-backup"),
        pytest.param("tenants/4913", False, id="vim-probe-file"),
        pytest.param("tenants/notes.txt", False, id="other-file"),
        pytest.param("other/acme.yaml", False, id="other-dir"),
    ],
)
def test_path_changed(
    cfg: ConfigDir, registry: TenantRegistry, reloads: Reloads, path: str, reloaded: bool
) -> None:
    registry.path_changed(cfg.path / path)
    assert len(reloads.seen) == (2 if reloaded else 1)


def test_path_changed_reloads_a_tenant_file_whose_bytes_changed(
    cfg: ConfigDir, registry: TenantRegistry, reloads: Reloads
) -> None:
    cfg.write_tenant("acme", acme("Acme 2"))
    registry.path_changed(cfg.path / "tenants" / "acme.yaml")
    assert len(reloads.seen) == 2
    tenant = registry.snapshot.tenant("acme")
    assert tenant is not None and tenant.name == "Acme 2"


def test_daemon_reload_applies_live_settings_and_reports_restart_keys(
    cfg: ConfigDir, registry: TenantRegistry, reloads: Reloads
) -> None:
    old = registry.snapshot.daemon
    cfg.write_daemon(
        daemon_settings(
            server={"host": "127.0.0.1", "port": 9999, "shutdownGrace": "3s"},
            store="sqlite:///two.db",
            auth={"adminKeys": ["rotated-admin-key"]},
            delivery={"maxAttempts": 7, "timeout": "500ms", "circuit": {"cooldown": "1m"}},
        )
    )
    assert registry.reload_daemon() == ["server.port", "store"]
    daemon = registry.snapshot.daemon
    assert (daemon.delivery.max_attempts, daemon.delivery.timeout) == (7, 0.5)
    assert daemon.delivery.circuit.cooldown == 60.0
    assert daemon.server.shutdown_grace == 3.0
    # Only a restart moves the socket and the database; until then the old values stay.
    assert (
        (daemon.server.port, daemon.store)
        == (old.server.port, old.store)
        == (8081, "sqlite:///one.db")
    )
    keys = registry.snapshot.keys
    assert keys[key_digest("rotated-admin-key")] == ADMIN
    assert key_digest(ADMIN_KEY) not in keys
    assert keys[key_digest(ACME_KEY)] == "acme"  # tenants are untouched
    assert reloads.counts == (2.0, 0.0, 1.0)


def test_daemon_reload_without_restart_keys(cfg: ConfigDir, registry: TenantRegistry) -> None:
    registry.load()
    cfg.write_daemon(daemon_settings(delivery={"maxAttempts": 4}))
    assert registry.reload_daemon() == []
    assert registry.snapshot.daemon.delivery.max_attempts == 4


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param("delivery: {maxAttempts: [\n", id="invalid-yaml"),
        pytest.param("delivery: {timeout: 5 minutes}\n", id="bad-duration"),
        pytest.param("delivery: {maxAttemps: 3}\n", id="unknown-key"),
        pytest.param("auth: {adminKeys: ['${MISSING_ADMIN}']}\n", id="missing-env"),
        pytest.param(f"auth: {{adminKeys: [{ACME_KEY}]}}\n", id="admin-key-is-a-tenant-key"),
    ],
)
def test_invalid_daemon_file_keeps_the_old_settings(
    cfg: ConfigDir, registry: TenantRegistry, reloads: Reloads, broken: str
) -> None:
    before = registry.snapshot
    (cfg.path / "pipecored.yaml").write_text(broken, encoding="utf-8")
    assert registry.reload_daemon() == []
    assert registry.snapshot is before
    assert reloads.seen == [True, False]
    assert reloads.counts == (2.0, 1.0, 0.0)


def test_invalid_daemon_file_at_startup_is_fatal(
    cfg: ConfigDir, providers: LoadedProviders
) -> None:
    (cfg.path / "pipecored.yaml").write_text("server: {port: eighty}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        TenantRegistry(cfg.path, providers, env={}).load()
    assert [str(i) for i in caught.value.issues] == [
        "pipecored.yaml: server.port: Input should be a valid integer, "
        "unable to parse string as an integer"
    ]


def test_a_key_cannot_be_taken_from_another_tenant(
    cfg: ConfigDir, registry: TenantRegistry, reloads: Reloads
) -> None:
    """A second tenant file holding acme's key (a copy-paste) must not let its users act as
    acme, nor take acme's traffic: the new file is refused and acme keeps its key."""
    cfg.write_tenant("bravo", acme("Bravo", token="bravo-token"))
    entry = registry.reload_tenant("bravo")
    assert entry is not None and entry.config is None and entry.error is not None
    assert [str(i) for i in entry.error.issues] == [
        "tenants/bravo.yaml: apiKeys.0: "
        "this key already belongs to another tenant or is an admin key"
    ]
    assert registry.snapshot.keys[key_digest(ACME_KEY)] == "acme"
    # A tenant may keep or rotate its own key.
    cfg.write_tenant("acme", acme("Acme 2"))
    kept = registry.reload_tenant("acme")
    assert kept is not None and kept.error is None
    cfg.write_tenant("acme", acme(key=ADMIN_KEY))
    taken = registry.reload_tenant("acme")
    assert taken is not None and taken.error is not None
    assert registry.snapshot.keys[key_digest(ADMIN_KEY)] == ADMIN


def test_a_key_two_files_hold_at_startup_is_nobodys(
    cfg: ConfigDir, providers: LoadedProviders
) -> None:
    """With nothing live yet to say which file held the key first, file order must not decide
    who it is ("aaa.yaml" holding acme's key would act as acme): both files are refused."""
    cfg.write_tenant("aaa", acme("Aaa", token="aaa-token"))
    cfg.write_tenant("zulu", acme("Zulu", key="zulu-key"))
    registry = TenantRegistry(cfg.path, providers, env={})
    registry.load()
    snapshot = registry.snapshot
    assert key_digest(ACME_KEY) not in snapshot.keys
    assert snapshot.tenants["aaa"].config is None
    assert snapshot.tenants["acme"].config is None
    assert snapshot.tenants["acme"].error is not None
    assert snapshot.keys[key_digest("zulu-key")] == "zulu"
    # once one file lets the key go, the other has it
    cfg.write_tenant("aaa", acme("Aaa", key="aaa-key", token="aaa-token"))
    registry.reload_tenant("aaa")
    assert registry.snapshot.keys[key_digest(ACME_KEY)] == "acme"
    assert registry.snapshot.keys[key_digest("aaa-key")] == "aaa"
    assert registry.snapshot.tenants["acme"].error is None


def test_replace_tenant(registry: TenantRegistry, reloads: Reloads) -> None:
    current = registry.snapshot.tenant("acme")
    assert current is not None
    registry.replace_tenant("acme", current.model_copy(update={"name": "Acme API"}))
    replaced = registry.snapshot.tenant("acme")
    assert replaced is not None and replaced.name == "Acme API"
    assert reloads.seen == [True, True]


def test_sync_reloads_only_what_changed(
    cfg: ConfigDir, registry: TenantRegistry, reloads: Reloads
) -> None:
    registry.sync()
    assert reloads.seen == [True]  # nothing changed: nothing reloaded
    cfg.write_tenant("bravo", acme("Bravo", key="bravo-key", token="bravo-token"))
    cfg.write_daemon(daemon_settings(delivery={"maxAttempts": 5}))
    (cfg.path / "tenants" / "acme.yaml").unlink()
    registry.sync()
    snapshot = registry.snapshot
    assert set(snapshot.tenants) == {"bravo"}
    assert snapshot.daemon.delivery.max_attempts == 5
    assert reloads.removed == ["acme"]
    assert reloads.seen == [True, True, True, True]
    registry.sync()
    assert len(reloads.seen) == 4


def test_a_directory_event_syncs_the_whole_dir(
    cfg: ConfigDir, registry: TenantRegistry, reloads: Reloads
) -> None:
    cfg.write_tenant("acme", acme("Acme 2"))
    registry.path_changed(cfg.path / "tenants")
    tenant = registry.snapshot.tenant("acme")
    assert tenant is not None and tenant.name == "Acme 2"


def test_a_renamed_file_keeps_its_tenants_keys(
    cfg: ConfigDir, registry: TenantRegistry, reloads: Reloads
) -> None:
    """gamma.yaml renamed to agamma.yaml: the watcher reports both paths and the new name
    sorts first, so it is read while gamma still holds the keys. Once gamma is gone, agamma
    must have them, not stay locked out by a conflict nobody checks again."""
    gamma = cfg.write_tenant("gamma", acme("Gamma", key="gamma-key", token="gamma-token"))
    registry.reload_tenant("gamma")
    gamma.rename(cfg.path / "tenants" / "agamma.yaml")

    registry.path_changed(cfg.path / "tenants" / "agamma.yaml")
    registry.path_changed(cfg.path / "tenants" / "gamma.yaml")

    snapshot = registry.snapshot
    assert snapshot.keys[key_digest("gamma-key")] == "agamma"
    assert snapshot.tenants["agamma"].error is None
    assert "gamma" not in snapshot.tenants


def test_a_rename_read_in_one_batch_is_applied_removal_first(
    cfg: ConfigDir, registry: TenantRegistry, reloads: Reloads
) -> None:
    gamma = cfg.write_tenant("gamma", acme("Gamma", key="gamma-key", token="gamma-token"))
    registry.reload_tenant("gamma")
    gamma.rename(cfg.path / "tenants" / "agamma.yaml")
    reads = [
        read
        for name in ("agamma.yaml", "gamma.yaml")
        for read in registry.read_change(cfg.path / "tenants" / name)
    ]
    registry.apply(reads)
    assert registry.snapshot.keys[key_digest("gamma-key")] == "agamma"
    assert reloads.counts[1] == 0.0  # no false conflict on the way


def test_a_key_moved_between_files_settles_in_either_order(
    cfg: ConfigDir, registry: TenantRegistry, reloads: Reloads
) -> None:
    cfg.write_tenant("bravo", acme("Bravo", key=ACME_KEY, token="bravo-token"))
    assert registry.reload_tenant("bravo") is not None
    assert registry.snapshot.tenants["bravo"].error is not None  # acme still holds it
    cfg.write_tenant("acme", acme("Acme", key="acme-new-key"))
    registry.reload_tenant("acme")
    assert registry.snapshot.keys[key_digest(ACME_KEY)] == "bravo"
    assert registry.snapshot.keys[key_digest("acme-new-key")] == "acme"
    assert registry.snapshot.tenants["bravo"].error is None


def test_an_admin_key_refused_for_a_conflict_is_applied_once_the_tenant_lets_it_go(
    cfg: ConfigDir, registry: TenantRegistry, reloads: Reloads
) -> None:
    cfg.write_daemon(daemon_settings(auth={"adminKeys": [ADMIN_KEY, "new-admin-key-0001"]}))
    cfg.write_tenant("acme", acme(key="new-admin-key-0001"))
    registry.reload_tenant("acme")  # acme now holds it (and its old key is gone)
    registry.reload_daemon()
    assert registry.snapshot.keys[key_digest("new-admin-key-0001")] == "acme"
    cfg.write_tenant("acme", acme())
    registry.reload_tenant("acme")
    assert registry.snapshot.keys[key_digest("new-admin-key-0001")] == ADMIN
    assert registry.snapshot.keys[key_digest(ACME_KEY)] == "acme"


def test_the_config_api_write_is_key_checked_like_a_reload(
    cfg: ConfigDir, registry: TenantRegistry, reloads: Reloads
) -> None:
    """A file refused for holding another principal's key, then written through the config API
    (which swaps the written tenant in): the key must stay with its owner."""
    cfg.write_tenant("bravo", acme("Bravo", key="bravo-key", token="bravo-token"))
    registry.reload_tenant("bravo")
    cfg.write_tenant("acme", acme(key="bravo-key"))  # an operator's mistake
    entry = registry.reload_tenant("acme")
    assert entry is not None and entry.error is not None

    written = acme("Acme API", key="bravo-key")
    config = TenantConfig.model_validate(written)
    with pytest.raises(TenantConfigInvalid) as refused:
        registry.replace_tenant("acme", config)

    assert "tenants/acme.yaml: apiKeys.0" in refused.value.message
    assert registry.snapshot.keys[key_digest("bravo-key")] == "bravo"
    assert registry.snapshot.keys[key_digest(ACME_KEY)] == "acme"  # the last good version
    assert registry.snapshot.tenants["acme"].error is not None
    # and it stays so after the file is read again
    registry.reload_tenant("acme")
    assert registry.snapshot.keys[key_digest("bravo-key")] == "bravo"


def test_a_read_older_than_the_last_write_is_not_applied(
    cfg: ConfigDir, registry: TenantRegistry, reloads: Reloads
) -> None:
    """The watcher reads in a thread; the config API may swap a newer version in meanwhile."""
    path = cfg.path / "tenants" / "acme.yaml"
    cfg.write_tenant("acme", acme("Acme on disk"))
    (stale,) = registry.read_change(path)
    current = registry.snapshot.tenant("acme")
    assert current is not None
    registry.replace_tenant("acme", current.model_copy(update={"name": "Acme API"}))
    registry.apply([stale])
    tenant = registry.snapshot.tenant("acme")
    assert tenant is not None and tenant.name == "Acme API"


def test_oversized_file_is_refused_before_it_is_parsed(
    cfg: ConfigDir, registry: TenantRegistry, reloads: Reloads
) -> None:
    # valid YAML and a valid tenant, only too big
    cfg.write_tenant("bravo", {**acme("B" * MAX_CONFIG_BYTES, key="bravo-key")})
    entry = registry.reload_tenant("bravo")
    assert entry is not None and entry.error is not None
    assert [str(i) for i in entry.error.issues] == [
        "tenants/bravo.yaml: (root): over 1,048,576 bytes, the limit for a config file"
    ]


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_tenant_path_that_is_not_a_regular_file_is_refused(
    cfg: ConfigDir, providers: LoadedProviders, kind: str
) -> None:
    path = cfg.path / "tenants" / "bravo.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    registry = TenantRegistry(cfg.path, providers, env={})
    # on a FIFO, an open() for reading waits for a writer: the load would never return
    loading = threading.Thread(target=registry.load, daemon=True)
    loading.start()
    loading.join(timeout=10)
    assert not loading.is_alive(), "the load hung on the FIFO"
    entry = registry.snapshot.tenants["bravo"]
    assert entry.error is not None
    assert entry.error.issues[0].file == "tenants/bravo.yaml"
    assert registry.snapshot.tenant("acme") is not None


def test_a_symlink_to_a_regular_file_is_read(
    cfg: ConfigDir, providers: LoadedProviders, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere.yaml"
    target.write_text(yaml.safe_dump(acme("Bravo", key="bravo-key")), encoding="utf-8")
    (cfg.path / "tenants" / "bravo.yaml").symlink_to(target)
    registry = TenantRegistry(cfg.path, providers, env={})
    registry.load()
    assert registry.snapshot.keys[key_digest("bravo-key")] == "bravo"
