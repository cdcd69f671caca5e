"""A fast loopback provider for the httpjson plugin, run as its own process.

``POST /messages`` answers ``201 {"id"}`` after ``--delay`` seconds and counts the request (the
time it arrived, on the system-wide monotonic clock, so the benchmark can compare it with its
own). ``GET /stats`` gives ``{"count", "first", "last"}``; ``POST /reset`` zeroes them.

    python -m bench.fake_provider --port 8081 --delay 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

import uvloop
from aiohttp import web


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None

    def hit(self) -> int:
        now = time.monotonic()
        self.count += 1
        if self.first is None:
            self.first = now
        self.last = now
        return self.count


def make_app(delay: float) -> web.Application:
    counter = Counter()

    async def messages(request: web.Request) -> web.Response:
        await request.read()
        number = counter.hit()
        if delay:
            await asyncio.sleep(delay)
        return web.json_response({"id": f"fp-{number}"}, status=201)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {"count": counter.count, "first": counter.first, "last": counter.last}
        )

    async def reset(request: web.Request) -> web.Response:
        counter.__init__()  # type: ignore[misc]
        return web.json_response({"count": 0})

    app = web.Application()
    app.router.add_post("/messages", messages)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    return app


async def serve(host: str, port: int, delay: float) -> None:
    runner = web.AppRunner(make_app(delay), access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.host, args.port, args.delay))


if __name__ == "__main__":
    main()
