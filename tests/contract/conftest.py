"""The stores the contract suite runs against: one factory per ``MessageStore`` implementation.

Each implementation has a context manager that prepares a fresh, empty database for one test,
yields a function building unopened stores on it (the suite opens, closes and reopens them), and
cleans up afterwards: a SQLite file, or a PostgreSQL schema of the test's own in a database of
the run's own (tests/pg.py; skipped without a server, a failure in CI).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from pipecored.store import MessageStore
from pipecored.store.postgres import PostgresStore
from pipecored.store.sqlite import SQLiteStore
from tests.pg import postgres_database, postgres_schema

# Builds a new, unopened store on the test's database; every store it builds sees the same data.
StoreFactory = Callable[[], MessageStore]


@contextlib.contextmanager
def sqlite_stores(tmp_path: Path) -> Iterator[StoreFactory]:
    # a directory that does not exist yet: opening creates it, as a first start does
    path = str(tmp_path / "data" / "pipecored.db")
    yield lambda: SQLiteStore(path)


@contextlib.contextmanager
def postgres_stores(database: str) -> Iterator[StoreFactory]:
    # a schema of the test's own in the run's database: as empty as a new database, and quick
    with postgres_schema(database) as url:
        yield lambda: PostgresStore(url, min_connections=1, max_connections=4)


@pytest.fixture(scope="session")
def postgres_database_url() -> Iterator[str]:
    """The test run's own database (the contract suite's schemas live in it)."""
    with postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    if request.param == "sqlite":
        with sqlite_stores(tmp_path) as factory:
            yield factory
        return
    database = request.getfixturevalue("postgres_database_url")
    with postgres_stores(database) as factory:
        yield factory


@pytest.fixture
async def store(new_store: StoreFactory) -> AsyncIterator[MessageStore]:
    s = new_store()
    await s.open()
    yield s
    await s.close()
