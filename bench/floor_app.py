"""The floor (issue 19): a minimal durable gateway, the least a daemon that loses nothing does.

Bare Starlette on the daemon's uvicorn settings (uvloop, httptools, the daemon's GC settings);
one writer thread group-committing into SQLite (WAL, ``synchronous=FULL``, a table with an
indexed status column): it takes every job waiting, runs them in one transaction (the batch's
inserts as one ``executemany``) and settles their futures with one loop wake-up. With
``BENCH_PROVIDER`` set, a loop claims batches (``UPDATE ... RETURNING``), posts each message with
raw aiohttp (the httpjson plugin's request), and completes what answered in batches. No auth,
config, validation, metrics or logs: what pipecored costs beyond this is its own work.

    BENCH_DB=/tmp/floor.db [BENCH_PROVIDER=http://127.0.0.1:8081 BENCH_INFLIGHT=256] \
        python -m uvicorn bench.floor_app:app --loop uvloop --http httptools --port 8084
"""

from __future__ import annotations

import asyncio
import gc
import os
import queue
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DB, PROVIDER = os.environ.get("BENCH_DB", "floor.db"), os.environ.get("BENCH_PROVIDER", "")
INFLIGHT, CLAIM_BATCH = int(os.environ.get("BENCH_INFLIGHT", "256")), 128
QUEUED, CLAIMED, DONE, FAILED = 0, 1, 2, 3
SCHEMA = """CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY, id TEXT NOT NULL,
 body TEXT NOT NULL, status INTEGER NOT NULL, provider_id TEXT);
CREATE INDEX IF NOT EXISTS messages_status ON messages (status);"""
CLAIM = f"""UPDATE messages SET status = {CLAIMED} WHERE seq IN (SELECT seq FROM messages
 WHERE status = {QUEUED} ORDER BY seq LIMIT ?) RETURNING seq, id, body"""
Job = tuple[str, Any, asyncio.Future[Any]]


class Writer:
    """One thread, one connection: every job waiting goes in the next transaction."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self.jobs = loop, queue.SimpleQueue[Job | None]()
        self.thread = threading.Thread(target=self._run, name="floor-writer", daemon=True)

    def submit(self, kind: str, arg: Any) -> asyncio.Future[Any]:
        future = self.loop.create_future()
        self.jobs.put((kind, arg, future))
        return future

    def _run(self) -> None:
        conn = sqlite3.connect(DB, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.executescript(SCHEMA)
        while (first := self.jobs.get()) is not None:
            batch = [first]
            with_stop = False
            while True:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    with_stop = True
                    break
                batch.append(job)
            conn.execute("BEGIN")
            results: list[Any] = []
            inserts = [(j[1][0], j[1][1], QUEUED) for j in batch if j[0] == "insert"]
            if inserts:
                conn.executemany(
                    "INSERT INTO messages (id, body, status) VALUES (?, ?, ?)", inserts
                )
            for kind, arg, _ in batch:
                if kind == "claim":
                    results.append(conn.execute(CLAIM, (arg,)).fetchall())
                elif kind == "complete":
                    conn.executemany(
                        "UPDATE messages SET status = ?, provider_id = ? WHERE seq = ?", arg
                    )
                    results.append(None)
                else:
                    results.append(None)
            conn.execute("COMMIT")
            self.loop.call_soon_threadsafe(_settle, batch, results)
            if with_stop:
                break
        conn.close()


def _settle(batch: list[Job], results: list[Any]) -> None:
    for (_, _, future), result in zip(batch, results, strict=True):
        if not future.done():
            future.set_result(result)
    if PROVIDER and any(kind == "insert" for kind, _, _ in batch):
        deliverer.wake.set()  # new work; a claim's own commit must not wake the loop again


class Deliverer:
    """Claim up to the free slots, post each, complete the answers in batches."""

    def __init__(self) -> None:
        self.wake, self.inflight, self.answers = asyncio.Event(), 0, list[tuple[int, str, int]]()
        self.flushing, self.tasks = False, set[asyncio.Task[None]]()

    async def run(self, session: aiohttp.ClientSession) -> None:
        while True:
            self.wake.clear()
            free = INFLIGHT - self.inflight
            rows = await writer.submit("claim", min(free, CLAIM_BATCH)) if free > 0 else []
            for seq, message_id, body in rows:
                self.inflight += 1
                task = asyncio.create_task(self.post(session, seq, message_id, body))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            if len(rows) < min(free, CLAIM_BATCH) or free <= 0:
                await self.wake.wait()

    async def post(
        self, session: aiohttp.ClientSession, seq: int, message_id: str, body: str
    ) -> None:
        data = orjson.loads(body)
        payload = {"id": message_id, "channel": "sms", "to": [data["to"]], "from": "+15550000000",
                   "body": data["body"]}  # fmt: skip
        answer: tuple[int, str, int] = (FAILED, "", seq)
        try:
            async with session.post(f"{PROVIDER}/messages", data=orjson.dumps(payload),
                                    headers=HEADERS) as response:  # fmt: skip
                if 200 <= response.status < 300:
                    answer = (DONE, (await response.json())["id"], seq)
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
            pass
        self.answers.append(answer)
        if not self.flushing:
            self.flushing = True
            asyncio.get_running_loop().create_task(self.flush())

    async def flush(self) -> None:
        while self.answers:
            done, self.answers = self.answers, []
            await writer.submit("complete", done)
            self.inflight -= len(done)
            self.wake.set()
        self.flushing = False


HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer bench-provider-token"}
writer: Writer
deliverer = Deliverer()


async def send(request: Request) -> Response:
    data = await request.json()
    message_id = uuid.uuid4().hex
    await writer.submit("insert", (message_id, orjson.dumps(data).decode()))
    return Response(b'{"id":"' + message_id.encode() + b'"}', 202, media_type="application/json")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global writer
    gc.collect()
    gc.freeze()  # as pipecored's serve does (cli._settle_heap)
    gc.set_threshold(10_000, 20, 100)
    writer = Writer(asyncio.get_running_loop())
    writer.thread.start()
    await writer.submit("noop", None)  # the schema exists
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=INFLIGHT))
    loop_task = asyncio.create_task(deliverer.run(session)) if PROVIDER else None
    try:
        yield
    finally:
        if loop_task is not None:
            loop_task.cancel()
        await session.close()
        writer.jobs.put(None)
        writer.thread.join(10)


app = Starlette(
    routes=[
        Route("/messaging/send/{channel}", send, methods=["POST"]),
    ],
    lifespan=lifespan,
)
