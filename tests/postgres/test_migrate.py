"""``pipecored migrate --config DIR``: brings either store to the schema this version needs
(what every daemon also does when it starts, under the same lock), says from which version,
does nothing the second time, and refuses a database a newer pipecored has migrated."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import yaml

from pipecored.store.postgres.schema import MIGRATIONS, SCHEMA_VERSION
from pipecored.store.sqlite_schema import SCHEMA_VERSION as SQLITE_VERSION
from tests.test_cli import run


def _config(tmp_path: Path, store: str) -> Path:
    root = tmp_path / "config"
    (root / "tenants").mkdir(parents=True)
    settings = {"store": store, "logging": {"format": "json"}}
    (root / "pipecored.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")
    return root


def _migrate(config: Path) -> tuple[int, str]:
    done = run("migrate", "--config", str(config))
    return done.returncode, done.stdout + done.stderr


def _version(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version FROM pipecored_schema").fetchone()
        assert row is not None
        return int(row[0])


def test_migrate_a_new_postgresql_database_then_again(tmp_path: Path, postgres_url: str) -> None:
    config = _config(tmp_path, postgres_url)
    assert _migrate(config) == (
        0,
        f"store schema migrated from version 0 to {SCHEMA_VERSION}\n",
    )
    assert _version(postgres_url) == SCHEMA_VERSION
    assert _migrate(config) == (0, f"store schema is up to date (version {SCHEMA_VERSION})\n")


def test_migrate_a_postgresql_database_of_an_older_version(
    tmp_path: Path, postgres_url: str
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # as version 1 left it
        with conn.transaction():
            conn.execute(MIGRATIONS[0])
            conn.execute("UPDATE pipecored_schema SET version = 1")
        conn.execute(
            "INSERT INTO messages (id, tenant_id, channel, direction, to_json, status,"
            " created_at, updated_at, payload_json)"
            " VALUES ('msg_old', 'acme', 'sms', 'outbound', '\"+34600111222\"', 'queued',"
            ' 1.0, 1.0, \'{"body": "¡Hola! 🍷"}\')'
        )
    code, output = _migrate(_config(tmp_path, postgres_url))
    assert (code, output) == (0, f"store schema migrated from version 1 to {SCHEMA_VERSION}\n")
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT payload_json FROM messages WHERE id = 'msg_old'").fetchone()
    assert row == ('{"body": "¡Hola! 🍷"}',)


def test_a_database_of_a_newer_pipecored_is_refused(tmp_path: Path, postgres_url: str) -> None:
    config = _config(tmp_path, postgres_url)
    assert _migrate(config)[0] == 0
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE pipecored_schema SET version = %s", (SCHEMA_VERSION + 1,))
    code, output = _migrate(config)
    assert code == 1
    assert f"newer than this pipecored ({SCHEMA_VERSION})" in output, output
    assert "Traceback" not in output, output


def test_migrate_a_sqlite_file(tmp_path: Path) -> None:
    config = _config(tmp_path, "sqlite:///data/pipecored.db")
    assert _migrate(config) == (
        0,
        f"store schema migrated from version 0 to {SQLITE_VERSION}\n",
    )
    conn = sqlite3.connect(config / "data" / "pipecored.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SQLITE_VERSION
    finally:
        conn.close()
    assert _migrate(config) == (0, f"store schema is up to date (version {SQLITE_VERSION})\n")
