"""Schema v3 (issue 16): the event outbox and the suppressions, added to a v2 database without
touching what it holds."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pipecored.store.sqlite import SQLiteStore
from pipecored.store.sqlite_schema import _V1, MIGRATIONS, SCHEMA_VERSION, _v2, split_statements
from tests.contract.store_records import new_message


def _v2_database(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in split_statements(_V1):
        conn.execute(statement)
    _v2(conn)
    conn.execute("PRAGMA user_version = 2")
    conn.close()


def _tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    finally:
        conn.close()


async def test_a_v2_database_gains_the_outbox_and_suppressions_and_keeps_its_messages(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v2.db"
    _v2_database(path)
    store = SQLiteStore(str(path))
    await store.open()
    try:
        await store.accept(new_message(1))
    finally:
        await store.close()

    assert SCHEMA_VERSION == len(MIGRATIONS) >= 3
    assert {"outbox_events", "outbox_deliveries", "suppressions"} <= _tables(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 1
    conn.close()


def _migrated(tmp_path: Path) -> sqlite3.Connection:
    path = tmp_path / "v3.db"
    _v2_database(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    for statement in split_statements(str(MIGRATIONS[2])):
        conn.execute(statement)
    return conn


def test_one_suppression_per_tenant_channel_and_address(tmp_path: Path) -> None:
    conn = _migrated(tmp_path)
    insert = (
        "INSERT INTO suppressions (tenant_id, channel, address, created_at) VALUES (?, ?, ?, 0)"
    )
    conn.execute(insert, ("genda", "sms", "+56911111111"))
    conn.execute(insert, ("genda", "whatsapp", "+56911111111"))
    conn.execute(insert, ("tableflow", "sms", "+56911111111"))

    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(insert, ("genda", "sms", "+56911111111"))


def test_deliveries_belong_to_a_stored_event_and_go_with_it(tmp_path: Path) -> None:
    conn = _migrated(tmp_path)
    delivery = (
        "INSERT INTO outbox_deliveries (event_id, endpoint, state, updated_at) VALUES (?, ?, ?, 0)"
    )
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(delivery, ("evt_missing", "https://a.example/hook", "pending"))
    conn.execute(
        "INSERT INTO outbox_events (id, tenant_id, type, body, created_at)"
        " VALUES ('evt_1', 'genda', 'message.sent', x'7b7d', 0)"
    )
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(delivery, ("evt_1", "https://a.example/hook", "lost"))

    conn.execute(delivery, ("evt_1", "https://a.example/hook", "pending"))
    conn.execute("DELETE FROM outbox_events WHERE id = 'evt_1'")
    assert conn.execute("SELECT count(*) FROM outbox_deliveries").fetchone()[0] == 0
