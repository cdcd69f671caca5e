"""GroupCommit, the batching under the PostgreSQL store's accepts: who is written with whom,
and who is told what when a batch or one item of it fails."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from pipecored.store.group_commit import GroupCommit


class Recorder:
    """A flush that records its batches; each waits for ``gate`` when one is given."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate = gate

    async def flush(self, items: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        if self.gate is not None:
            await self.gate.wait()
        return [ValueError(f"item {i}") if i < 0 else i * 10 for i in items]


async def test_a_call_alone_is_written_at_once_by_itself() -> None:
    recorder = Recorder()
    commits = GroupCommit(recorder.flush, concurrency=2)
    assert await commits.submit(1) == 10
    assert await commits.submit(2) == 20
    assert recorder.batches == [[1], [2]]


@pytest.mark.parametrize(
    ("concurrency", "max_batch", "expected"),
    [
        # the first `concurrency` calls start a flush each; the rest wait for a free one
        (1, 500, [[0], [1, 2, 3, 4, 5, 6, 7, 8, 9]]),
        (2, 500, [[0], [1], [2, 3, 4, 5, 6, 7, 8, 9]]),
        (4, 500, [[0], [1], [2], [3], [4, 5, 6, 7, 8, 9]]),
        # never more than max_batch in one
        (1, 4, [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]),
    ],
)
async def test_calls_made_while_flushes_run_are_written_together(
    concurrency: int, max_batch: int, expected: list[list[int]]
) -> None:
    gate = asyncio.Event()
    recorder = Recorder(gate)
    commits = GroupCommit(recorder.flush, concurrency=concurrency, max_batch=max_batch)
    calls = [asyncio.create_task(commits.submit(i)) for i in range(10)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*calls) == [i * 10 for i in range(10)]
    assert recorder.batches == expected


async def test_an_item_s_own_error_goes_to_its_caller_alone() -> None:
    gate = asyncio.Event()
    commits = GroupCommit(Recorder(gate).flush, concurrency=1)
    calls = [asyncio.create_task(commits.submit(i)) for i in (1, 2, -3, 4)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[:2] == [10, 20] and results[3] == 40
    assert isinstance(results[2], ValueError) and str(results[2]) == "item -3"


async def test_a_failed_flush_fails_its_batch_and_the_next_batch_still_runs() -> None:
    batches: list[list[int]] = []

    async def flush(items: Sequence[int]) -> list[int | BaseException]:
        batches.append(list(items))
        await asyncio.sleep(0)
        if 2 in items:
            raise ConnectionError("database gone")
        return [i for i in items]

    commits = GroupCommit(flush, concurrency=1)
    calls = [asyncio.create_task(commits.submit(i)) for i in (1, 2, 3)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert batches == [[1], [2, 3]]
    assert results[0] == 1
    assert all(isinstance(r, ConnectionError) for r in results[1:])
    assert await commits.submit(4) == 4


async def test_a_flush_that_miscounts_is_an_error_for_every_caller() -> None:
    async def flush(items: Sequence[int]) -> list[int | BaseException]:
        return []

    commits = GroupCommit(flush)
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        await commits.submit(1)


async def test_a_cancelled_caller_s_item_is_still_written_and_drain_waits_for_it() -> None:
    gate = asyncio.Event()
    recorder = Recorder(gate)
    commits = GroupCommit(recorder.flush, concurrency=1)
    first = asyncio.create_task(commits.submit(1))
    gone = asyncio.create_task(commits.submit(2))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    gate.set()
    assert await first == 10
    await commits.drain()
    assert recorder.batches == [[1], [2]]
    assert gone.cancelled()


def test_concurrency_and_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        GroupCommit(Recorder().flush, concurrency=0)
    with pytest.raises(ValueError, match="at least 1"):
        GroupCommit(Recorder().flush, max_batch=0)
