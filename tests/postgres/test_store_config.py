"""The store settings in pipecored.yaml: a PostgreSQL URL (with ${ENV} parts), its pool and
its retention; a wrong one names its field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipecored.config.loader import load_daemon_config
from pipecored.config.model import DaemonConfig
from pipecored.errors import ConfigError
from pipecored.store import open_store
from pipecored.store.postgres import PostgresStore


def _load(tmp_path: Path, settings: dict[str, object], **env: str) -> DaemonConfig:
    (tmp_path / "pipecored.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    return load_daemon_config(tmp_path, env=env)


def _issues(tmp_path: Path, settings: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as raised:
        _load(tmp_path, settings)
    return "\n".join(str(issue) for issue in raised.value.issues)


def test_a_postgresql_store_with_its_pool_and_retention(tmp_path: Path) -> None:
    daemon = _load(
        tmp_path,
        {
            "store": "postgresql://pipecored:${PG_PASSWORD}@db.internal:5432/pipecored",
            "storePool": {"minSize": 4, "maxSize": 20},
            "storeRetention": "90d",
        },
        PG_PASSWORD="s3cr3t-contraseña",
    )
    assert daemon.store == "postgresql://pipecored:s3cr3t-contraseña@db.internal:5432/pipecored"
    assert daemon.store_retention == 90 * 86400
    store = open_store(
        daemon.store,
        base_dir=str(tmp_path),
        pool_min=4,
        pool_max=20,
        retention=daemon.store_retention,
    )
    assert isinstance(store, PostgresStore)
    assert store.retention == 90 * 86400


def test_postgres_scheme_too_and_no_retention_by_default(tmp_path: Path) -> None:
    daemon = _load(tmp_path, {"store": "postgres://pipecored@127.0.0.1/pipecored"})
    assert daemon.store_retention is None


@pytest.mark.parametrize(
    ("settings", "field", "says"),
    [
        ({"storeRetention": "90d"}, "storeRetention", "PostgreSQL store only"),
        (
            {"store": "postgresql://db/pipecored", "storeRetention": "30m"},
            "storeRetention",
            "at least 1h",
        ),
        (
            {"store": "postgresql://db/pipecored", "storeRetention": "forever"},
            "storeRetention",
            "duration",
        ),
        ({"store": "mysql://db/pipecored"}, "store", "postgresql://"),
        ({"storePool": {"minSize": 0}}, "storePool.minSize", "greater than or equal to 1"),
    ],
)
def test_a_wrong_store_setting_names_its_field(
    tmp_path: Path, settings: dict[str, object], field: str, says: str
) -> None:
    issues = _issues(tmp_path, settings)
    assert field in issues, issues
    assert says in issues, issues
