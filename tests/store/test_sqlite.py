"""What is particular to the SQLite store, on real database files: URLs, the schema and its
migrations, WAL and the durability pragmas, group commit, and a commit that fails on a full disk.

The behaviour every store promises is in ``tests/contract/test_store_contract.py``, which runs
against this store too.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pipecored.errors import StoreError
from pipecored.store import NewMessage, open_store
from pipecored.store.sqlite import SQLiteStore, sqlite_path
from pipecored.store.sqlite_schema import SCHEMA_VERSION
from tests.conftest import eventually
from tests.contract.store_records import TENANT, TEXT, complete_after_early_events, new_message


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "data" / "pipecored.db")


@pytest.fixture
async def store(db_path: str) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(db_path)
    await s.open()
    yield s
    await s.close()


# -- URLs and lifecycle ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("sqlite:///pipecored.db", "/etc/pipecored/pipecored.db", id="relative"),
        pytest.param("sqlite:///data/../q.db", "/etc/pipecored/q.db", id="relative-normalized"),
        pytest.param("sqlite:////var/lib/p.db", "/var/lib/p.db", id="absolute"),
    ],
)
def test_sqlite_path(url: str, expected: str) -> None:
    assert sqlite_path(url, base_dir="/etc/pipecored") == expected


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("sqlite:///:memory:", id="memory"),
        pytest.param("sqlite://", id="empty"),
        pytest.param("sqlite:///", id="no-path"),
        pytest.param("sqlite://host/p.db", id="host"),
        pytest.param("sqlite:///p.db?mode=ro", id="query"),
    ],
)
def test_sqlite_path_refuses(url: str) -> None:
    with pytest.raises(ValueError):
        sqlite_path(url, base_dir="/etc/pipecored")


async def test_open_store_builds_a_working_store(tmp_path: Path) -> None:
    store = open_store("sqlite:///state/p.db", base_dir=str(tmp_path))
    assert isinstance(store, SQLiteStore)
    await store.open()
    try:
        await store.ping()
        assert (tmp_path / "state" / "p.db").exists()
    finally:
        await store.close()


async def test_schema_created_then_reopened(db_path: str) -> None:
    store = SQLiteStore(db_path)
    await store.open()
    await store.accept(new_message(1))
    await store.close()

    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    assert {"messages", "attempts", "idempotency", "pending_events"} <= tables
    conn.close()

    reopened = SQLiteStore(db_path)
    await reopened.open()
    try:
        assert await reopened.get("msg_test000001") is not None
    finally:
        await reopened.close()


async def test_migrates_an_existing_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    store = SQLiteStore(str(path))
    await store.open()
    try:
        await store.accept(new_message(1))
    finally:
        await store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    store = SQLiteStore(str(path))
    with pytest.raises(StoreError, match=r"open failed: .*newer"):
        await store.open()


# -- accept, durability, group commit -----------------------------------------------------------


async def test_the_writer_commits_durably(store: SQLiteStore) -> None:
    """An accept answers 202 only after its commit, and the commit is on disk only if SQLite
    syncs it: WAL with ``synchronous=FULL`` fsyncs the log at every commit (NORMAL would leave
    the last commits to a power cut, OFF all of them). Read from the connection that writes."""

    def pragmas(conn: sqlite3.Connection) -> tuple[str, int]:
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
        return str(journal).lower(), int(synchronous)

    await store.accept(new_message(1))
    assert await store._write("pragmas", pragmas) == ("wal", 2)  # 2 is FULL


async def test_text_is_stored_as_utf8_not_as_escapes(store: SQLiteStore, db_path: str) -> None:
    await store.accept(
        NewMessage(
            id="msg_utf8",
            tenant_id=TENANT,
            channel="email",
            to="ana@example.com",
            sender="Peña <hola@example.com>",
            payload={"subject": TEXT, "html": f"<p>{TEXT}</p>"},
            created_at=1000.0,
        )
    )
    raw = sqlite3.connect(db_path).execute(
        "SELECT CAST(payload_json AS BLOB) FROM messages WHERE id = 'msg_utf8'"
    )
    assert TEXT.encode() in raw.fetchone()[0]  # stored as UTF-8, not as \\u escapes


async def test_concurrent_accepts_share_commits(
    store: SQLiteStore, capsys: pytest.CaptureFixture[str]
) -> None:
    before = store.commits
    results = await asyncio.gather(*(store.accept(new_message(i)) for i in range(200)))
    commits = store.commits - before
    with capsys.disabled():
        print(f"\n200 concurrent accepts: {commits} commits")
    assert len({r.record.id for r in results}) == 200
    assert 1 <= commits <= 50
    assert len(await store.list_messages(TENANT, limit=500)) == 200


async def test_early_events_of_another_tenant_stay_pending(
    store: SQLiteStore, db_path: str
) -> None:
    await complete_after_early_events(store)
    pending = sqlite3.connect(db_path).execute("SELECT tenant_id FROM pending_events").fetchall()
    assert pending == [("other",)]


# -- failures -----------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
async def test_failed_commit_fails_the_whole_batch_and_the_store_recovers(
    store: SQLiteStore, db_path: str
) -> None:
    """A real write failure at COMMIT: with RLIMIT_FSIZE lowered, write(2) past the limit fails
    with EFBIG (Python ignores SIGXFSZ), exactly as on a full disk. In WAL mode SQLite writes a
    transaction's pages only when it commits, so the statements succeed and COMMIT fails."""
    import resource

    await store.accept(new_message(0))
    entered, gate = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        entered.set()
        gate.wait(10)

    # hold the writer in a batch of its own so that the next three accepts queue up together
    holder = asyncio.ensure_future(store._write("hold", hold))
    assert await asyncio.to_thread(entered.wait, 10)
    small = asyncio.ensure_future(store.accept(new_message(1)))
    big = [asyncio.ensure_future(store.accept(new_message(i, body="x" * 400_000))) for i in (2, 3)]
    await eventually(lambda: store._jobs.qsize() == 3)
    commits = store.commits

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (_largest_file(db_path) + 256 * 1024, hard))
    try:
        gate.set()
        await holder
        results = await asyncio.gather(small, *big, return_exceptions=True)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    assert all(isinstance(r, StoreError) for r in results), results
    assert all(str(r).startswith("accept failed: the write was not committed") for r in results)
    assert store.commits == commits + 1  # the holder's empty batch only
    for i in (1, 2, 3):
        assert await store.get(f"msg_test00000{i}") is None

    retried = await asyncio.gather(*(store.accept(new_message(i)) for i in (1, 2, 3)))
    assert [r.record.status for r in retried] == ["queued"] * 3
    assert len(await store.list_messages(TENANT, limit=10)) == 4
    await store.ping()


def _largest_file(db_path: str) -> int:
    # room for the small accept's pages, not for the big ones'
    return max(os.path.getsize(db_path), os.path.getsize(db_path + "-wal"))
