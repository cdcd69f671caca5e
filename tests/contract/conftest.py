"""The stores the contract suite runs against: one factory per ``MessageStore`` implementation.

A new implementation (PostgreSQL next) joins the whole suite by adding its factory to
:data:`STORE_FACTORIES`: a context manager that prepares a fresh, empty database for one test,
yields a function building unopened stores on it (the suite opens, closes and reopens them), and
cleans up afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from pipecored.store import MessageStore
from pipecored.store.sqlite import SQLiteStore

# Builds a new, unopened store on the test's database; every store it builds sees the same data.
StoreFactory = Callable[[], MessageStore]


@contextlib.contextmanager
def sqlite_stores(tmp_path: Path) -> Iterator[StoreFactory]:
    # a directory that does not exist yet: opening creates it, as a first start does
    path = str(tmp_path / "data" / "pipecored.db")
    yield lambda: SQLiteStore(path)


STORE_FACTORIES: dict[str, Callable[[Path], AbstractContextManager[StoreFactory]]] = {
    "sqlite": sqlite_stores,
}


@pytest.fixture(params=sorted(STORE_FACTORIES))
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    with STORE_FACTORIES[request.param](tmp_path) as factory:
        yield factory


@pytest.fixture
async def store(new_store: StoreFactory) -> AsyncIterator[MessageStore]:
    s = new_store()
    await s.open()
    yield s
    await s.close()
