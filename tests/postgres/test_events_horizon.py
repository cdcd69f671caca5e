"""Polling events on PostgreSQL lists them in commit order, holding back those a transaction
still running on the database could precede; a transaction running on another database of the
same server (a bulk load, a long report) holds nothing back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from pipecored.store import NewEvent
from pipecored.store.postgres import PostgresStore
from tests.contract.store_records import TENANT
from tests.pg import postgres_database


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    s = PostgresStore(postgres_url, min_connections=1, max_connections=2)
    await s.open()
    yield s
    await s.close()


def _event(n: int) -> NewEvent:
    return NewEvent(
        id=f"evt_{n:04d}", tenant_id=TENANT, type="provider.down", body=b"{}", created_at=1000.0
    )


async def _listed(store: PostgresStore) -> list[str]:
    return [e.id for e in await store.list_events(TENANT, after_seq=None, limit=10)]


def _open_writer(url: str) -> psycopg.Connection[tuple[object, ...]]:
    """A connection with a transaction that has its transaction id and stays open."""
    conn = psycopg.connect(url)
    conn.execute("SELECT pg_current_xact_id()")
    return conn


async def test_a_transaction_on_another_database_holds_nothing_back(
    store: PostgresStore,
) -> None:
    with postgres_database() as other, _open_writer(other) as elsewhere:
        await store.add_event(_event(1))
        assert await _listed(store) == ["evt_0001"]
        elsewhere.rollback()


async def test_a_transaction_on_this_database_holds_back_what_could_follow_it(
    store: PostgresStore, postgres_url: str
) -> None:
    await store.add_event(_event(1))
    with _open_writer(postgres_url) as running:
        await store.add_event(_event(2))  # committed after ``running`` began: it could precede
        assert await _listed(store) == ["evt_0001"]
        running.rollback()
    assert await _listed(store) == ["evt_0001", "evt_0002"]
