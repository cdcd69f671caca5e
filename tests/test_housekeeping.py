"""What the daemon tidies by itself: expired idempotency keys are forgotten on a schedule."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from pipecored.store import IdempotencyClaim, NewMessage, new_message_id
from pipecored.store.sqlite import SQLiteStore
from tests.conftest import eventually


async def _keys(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM idempotency").fetchone()[0])
    finally:
        conn.close()


async def test_expired_idempotency_keys_are_purged_while_the_daemon_runs(
    app_client_factory: Any, tmp_path: Path
) -> None:
    db = tmp_path / "pipecored.db"
    store = SQLiteStore(str(db))
    await store.open()
    now = time.time()
    for expires_at in (now - 60, now + 3600):
        message = NewMessage(
            id=new_message_id(),
            tenant_id="acme",
            channel="sms",
            to="+34600111222",
            sender=None,
            payload={"body": "hola"},
            created_at=now - 90_000,
        )
        claim = IdempotencyClaim(key=f"k-{expires_at}", request_hash="h", expires_at=expires_at)
        await store.accept(message, claim)
    await store.close()
    assert await _keys(db) == 2

    async with app_client_factory():
        # the expired key goes at start; the live one stays
        async def one_left() -> bool:
            return await _keys(db) == 1

        await eventually(one_left)
