"""Closed-loop HTTP load: ``connections`` clients each POST the send body back to back.

Debian's ``wrk`` (with ``post.lua``) when it is installed; otherwise this module's own
generator (aiohttp on uvloop), run as a separate process like wrk:

    python -m bench.loadgen --port 8080 --key KEY --connections 32 --duration 10

Either prints one line ``BENCH {json}`` with requests, duration_us, p50_us, p99_us, max_us,
non2xx and socket_errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import HOST, ROOT, SEND_BODY

LUA = Path(__file__).with_name("post.lua")
PATH = "/messaging/send/sms"


@dataclass(frozen=True)
class LoadResult:
    tool: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    socket_errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _parse(tool: str, output: str) -> LoadResult:
    for line in output.splitlines():
        if line.startswith("BENCH "):
            d = json.loads(line[len("BENCH ") :])
            return LoadResult(
                tool=tool,
                requests=d["requests"],
                seconds=d["duration_us"] / 1e6,
                p50_ms=d["p50_us"] / 1000,
                p99_ms=d["p99_us"] / 1000,
                max_ms=d["max_us"] / 1000,
                non2xx=d["non2xx"],
                socket_errors=d["socket_errors"],
            )
    raise RuntimeError(f"{tool} printed no result:\n{output[-2000:]}")


def _argv(
    port: int, key: str, connections: int, duration: float
) -> tuple[str, list[str], dict[str, str]]:
    body = json.dumps(SEND_BODY)
    wrk = shutil.which("wrk")
    if wrk is not None:
        argv = [
            wrk,
            *("-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s"),
            *("-s", str(LUA), f"http://{HOST}:{port}{PATH}"),
        ]
        return "wrk", argv, {**os.environ, "BENCH_BODY": body, "BENCH_KEY": key}
    argv = [
        sys.executable,
        *("-m", "bench.loadgen", "--port", str(port), "--key", key),
        *("--connections", str(connections), "--duration", str(duration)),
    ]
    return "python-loadgen", argv, {**os.environ, "PYTHONPATH": str(ROOT)}


def run_load(port: int, key: str, *, connections: int, duration: float) -> LoadResult:
    """Load ``POST /messaging/send/sms`` for ``duration`` seconds (bounded: the tool stops by
    itself, and is killed 30 s after it should have)."""
    return run_loads([port], key, connections=connections, duration=duration)


def run_loads(ports: list[int], key: str, *, connections: int, duration: float) -> LoadResult:
    """The same load split over several daemons (nodes sharing one store) at once, the
    connections shared out evenly: one generator process per port, all started together.
    Requests add up; the latencies given are the worst node's (percentiles of separate runs
    do not combine)."""
    share = max(1, connections // len(ports))
    started = []
    for port in ports:
        tool, argv, env = _argv(port, key, share, duration)
        proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        started.append((tool, proc))
    results = []
    try:
        for tool, proc in started:
            out, err = proc.communicate(timeout=duration + 30)
            if proc.returncode != 0:
                raise RuntimeError(f"{tool} failed ({proc.returncode}):\n{out}\n{err}")
            results.append(_parse(tool, out))
    finally:
        for _, proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if len(results) == 1:
        return results[0]
    return LoadResult(
        tool=results[0].tool,
        requests=sum(r.requests for r in results),
        seconds=max(r.seconds for r in results),
        p50_ms=max(r.p50_ms for r in results),
        p99_ms=max(r.p99_ms for r in results),
        max_ms=max(r.max_ms for r in results),
        non2xx=sum(r.non2xx for r in results),
        socket_errors=sum(r.socket_errors for r in results),
    )


# -- the fallback generator --------------------------------------------------------------------


async def _generate(port: int, key: str, connections: int, duration: float) -> dict[str, int]:
    import aiohttp

    body = json.dumps(SEND_BODY).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    url = f"http://{HOST}:{port}{PATH}"
    latencies: list[float] = []
    counts = {"non2xx": 0, "socket_errors": 0}
    deadline = time.monotonic() + duration

    async def client(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if not 200 <= response.status < 300:
                        counts["non2xx"] += 1
            except aiohttp.ClientError:
                counts["socket_errors"] += 1
                continue
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> int:
        if not latencies:
            return 0
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e6)

    return {
        "requests": len(latencies) + counts["non2xx"],
        "duration_us": round(elapsed * 1e6),
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "max_us": round(latencies[-1] * 1e6) if latencies else 0,
        **counts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    import uvloop

    result = uvloop.run(_generate(args.port, args.key, args.connections, args.duration))
    print("BENCH " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
