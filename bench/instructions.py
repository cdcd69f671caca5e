"""Instructions per message, counted by valgrind's callgrind: a measure of the daemon's CPU
cost that repeats within a fraction of a per cent whatever else the machine is doing, for
changes of 1-5 % that the throughput phases cannot resolve (their rounds spread 15-20 % on a
shared 2-CPU machine, see ANALYSIS.md).

The daemon runs under callgrind with instrumentation off while it starts. The benchmark then
switches it on (``callgrind_control``), sends ``--messages`` messages one after another, each
delivered by the loopback fake provider before the next is sent, switches it off and reads the
count, twice: once for ``n`` messages and once for ``2n``, in the same warm process; the
difference, divided by ``n``, leaves out what a window costs whatever it holds. Every thread of
the daemon is counted (the event loop, the SQLite writer and readers). It measures one message
at a time, not a loaded daemon: the cost of a message when nothing is batched.

    python -m bench.instructions [--messages 200] [--against REV|DIR]

With ``--against`` the same is measured for another revision (exported with ``git archive``)
or source tree, and the ratio printed. Not part of ``python -m bench``: under valgrind a run
takes a few minutes.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    HOST,
    ROOT,
    SEND_BODY,
    Procs,
    Workdir,
    export_revision,
    http_json,
    http_request,
    install_plugin,
    start_daemon,
    start_fake_provider,
    tenant_key,
    wait_ready,
    write_config,
)


def _control(pid: int, *args: str) -> str:
    done = subprocess.run(
        ["callgrind_control", *args, str(pid)], capture_output=True, text=True, check=True
    )
    return done.stdout


def _window(pid: int, out: Path, daemon_port: int, fake_port: int, n: int) -> int:
    """Instructions of ``n`` messages sent one after another, with instrumentation on."""
    url_headers = {"Content-Type": "application/json", "Authorization": f"Bearer {tenant_key(0)}"}
    body = json.dumps(SEND_BODY).encode()
    before = set(out.parent.glob(out.name + ".*"))
    _control(pid, "--zero")
    _control(pid, "--instr=on")
    start = int(http_json(fake_port, "GET", "/stats")["count"])
    for i in range(n):
        status, answer = http_request(
            daemon_port, "POST", "/messaging/send/sms", body=body, headers=url_headers, timeout=60
        )
        if status != 202:
            raise RuntimeError(f"send answered {status}: {answer[:200]!r}")
        deadline = time.monotonic() + 60
        while int(http_json(fake_port, "GET", "/stats")["count"]) < start + i + 1:
            if time.monotonic() > deadline:
                raise RuntimeError("a message was not delivered within 60 s")
            time.sleep(0.005)
    _control(pid, "--instr=off")
    _control(pid, "--dump")
    for _ in range(200):
        dumps = set(out.parent.glob(out.name + ".*")) - before
        if dumps:
            break
        time.sleep(0.05)
    (dump,) = dumps
    text = dump.read_text(encoding="utf-8", errors="replace")
    # "totals:" (the sum of the dump's costs; its "summary:" stays 0 when collection was
    # switched on after the start)
    match = re.search(r"^totals: (\d+)", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no instruction count in {dump}")
    return int(match.group(1))


def measure(work: Workdir, tree: Path, name: str, n: int) -> float:
    """Instructions per message of the daemon of ``tree``."""
    with Procs(work.logs) as procs:
        _, fake_port = start_fake_provider(procs, work, f"{name}-provider", 0.0)
        config = write_config(
            work.fresh(name) / "config",
            db=work.path / name / "pipecored.db",
            provider_url=f"http://{HOST}:{fake_port}",
            tenants=1,
        )
        out = work.path / name / "callgrind.out"
        daemon, port = start_daemon(
            procs,
            work,
            config,
            name,
            tree,
            wrapper=(
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out}",
            ),
            env={"PYTHONHASHSEED": "0"},
        )
        wait_ready(daemon, port, "/readyz", timeout=600, interval=0.5)
        _window(daemon.pid, out, port, fake_port, 5)  # warm: first calls, caches, connections
        one = _window(daemon.pid, out, port, fake_port, n)
        two = _window(daemon.pid, out, port, fake_port, 2 * n)
    per_message = (two - one) / n
    print(f"  {name}: {one:,} instructions for {n}, {two:,} for {2 * n}:", flush=True)
    print(f"  {name}: {per_message:,.0f} instructions per message", flush=True)
    return per_message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200, help="n (default 200)")
    parser.add_argument("--against", metavar="REV|DIR", help="also measure this revision/tree")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    path = Path(tempfile.mkdtemp(prefix="pipecored-instructions-"))
    try:
        work = Workdir(path, install_plugin(path / "plugin-site"))
        work.logs.mkdir()
        ours = measure(work, ROOT, "this-tree", args.messages)
        if args.against:
            other = Path(args.against)
            if not other.is_dir():
                other = export_revision(args.against, path / "exported")
            theirs = measure(work, other, "against", args.messages)
            print(
                f"instructions per message: {ours:,.0f}; {args.against}: {theirs:,.0f};"
                f" ratio {ours / theirs:.3f}",
                flush=True,
            )
    finally:
        if args.keep:
            print(f"work dir kept: {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
