"""Group commit: calls made while a write is in flight are written together by the next one.

A store whose every write is its own transaction pays a commit (a round trip, an fsync) per
call. :class:`GroupCommit` queues the calls and hands a batch of them to one ``flush`` as soon as
fewer than ``concurrency`` flushes are running: alone, a call is flushed at once; under load each
flush takes everything that arrived while the others ran, so the commits per second stay about
constant while the calls per commit grow with the load.

``flush`` gets the items in arrival order and returns one result per item, in the same order; a
result that is an exception is raised to that item's caller alone. If ``flush`` itself raises,
every caller of the batch gets the error. A caller that stops waiting (its request cancelled)
does not take its item out: once queued, it is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[Sequence[T]], Awaitable[Sequence["R | BaseException"]]]


class GroupCommit(Generic[T, R]):
    def __init__(self, flush: Flush[T, R], *, concurrency: int = 2, max_batch: int = 500) -> None:
        if concurrency < 1 or max_batch < 1:
            raise ValueError("concurrency and max_batch must be at least 1")
        self._flush = flush
        self._concurrency = concurrency
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        # an error nobody waits for any more (the caller was cancelled) is not logged as lost
        future.add_done_callback(_retrieve)
        self._pending.append((item, future))
        self._start()
        return await asyncio.shield(future)

    def _start(self) -> None:
        while self._pending and len(self._running) < self._concurrency:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            task = asyncio.create_task(self._write(batch), name="group-commit")
            self._running.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start()

    async def _write(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"flush returned {len(results)} results for {len(batch)} items")
        except Exception as exc:  # every caller of the batch is told
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # cancelled (the loop is closing): so are the callers
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def drain(self) -> None:
        """Wait until everything queued so far is written (or failed)."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
