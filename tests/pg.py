"""The machine's PostgreSQL for the tests: a database of this test run's own, and a schema of
each test's own in it.

The DSN comes from ``PIPECORED_TEST_POSTGRES_DSN`` (CI sets it to the machine's server:
``postgresql://postgres@127.0.0.1:5432/test``). Without it the PostgreSQL tests skip, saying so;
where ``PIPECORED_TEST_REQUIRE`` names ``postgres`` (CI), a missing or unreachable server is a
failure instead.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest

DSN_VARIABLE = "PIPECORED_TEST_POSTGRES_DSN"


def required(component: str) -> bool:
    wanted = os.environ.get("PIPECORED_TEST_REQUIRE", "")
    return component in {part.strip() for part in wanted.split(",")}


def admin_dsn() -> str:
    """The server to make test databases on, or a skip (a failure where it is required)."""
    dsn = os.environ.get(DSN_VARIABLE)
    reason = None
    if not dsn:
        reason = (
            f"no PostgreSQL: set {DSN_VARIABLE} (e.g. postgresql://postgres@127.0.0.1:5432/test)"
        )
    else:
        try:
            with psycopg.connect(dsn, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            reason = f"PostgreSQL at {DSN_VARIABLE} does not answer: {exc}"
    if reason is not None:
        if required("postgres"):
            pytest.fail(f"{reason} (PIPECORED_TEST_REQUIRE names postgres)")
        pytest.skip(reason)
    assert dsn is not None
    return dsn


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


def with_schema(url: str, schema: str) -> str:
    """The URL with ``search_path`` set to ``schema`` for every connection made from it."""
    parts = urlsplit(url)
    option = "options=" + quote(f"-csearch_path={schema}")
    query = f"{parts.query}&{option}" if parts.query else option
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty database for the caller, dropped afterwards; yields its URL."""
    dsn = admin_dsn()
    name = f"pipecored_test_{secrets.token_hex(6)}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(dsn, name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def postgres_schema(database_url: str) -> Iterator[str]:
    """A new schema in ``database_url``'s database; yields a URL whose connections use it."""
    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield with_schema(database_url, name)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
