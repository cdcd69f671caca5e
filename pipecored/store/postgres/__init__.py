"""The PostgreSQL store: one database shared by one daemon or several (SPEC section 12)."""

from __future__ import annotations

from pipecored.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
