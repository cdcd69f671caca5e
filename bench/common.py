"""What every phase needs: child processes that are always stopped, free loopback ports,
readiness polling, the httpjson plugin installed like a third party's, generated config dirs."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN = ROOT / "examples" / "pipecored-httpjson"
HOST = "127.0.0.1"  # nothing but loopback is ever contacted

ADMIN_KEY = "bench-admin-key-0123456789abcdef"
PROVIDER_TOKEN = "bench-provider-token-0123456789"
SEND_BODY = {"to": "+34600111222", "body": "Your table for 4 is ready at 21:30. See you soon!"}


def tenant_id(i: int) -> str:
    return f"t{i:05d}"


def tenant_key(i: int) -> str:
    return f"bench-key-{i:05d}-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# -- processes ---------------------------------------------------------------------------------


@dataclass
class Proc:
    """One child process, in its own session so that Ctrl-C reaches only the benchmark, which
    then stops its children itself."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> Proc:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=ROOT,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit status."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def output_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Procs(contextlib.AbstractContextManager["Procs"]):
    """Every process a phase starts; all of them are stopped when the ``with`` block ends,
    whether it ends normally, by an exception or by Ctrl-C."""

    logs: Path
    started: list[Proc] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, argv, self.logs / f"{name}.log", env)
        self.started.append(proc)
        return proc.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for proc in reversed(self.started):
            proc.stop()
        self.started.clear()


def stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so that the ``with`` blocks stop the children."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


# -- HTTP --------------------------------------------------------------------------------------


def http_request(
    port: int,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def http_json(port: int, method: str, path: str, **kwargs: Any) -> Any:
    status, body = http_request(port, method, path, **kwargs)
    if status >= 300:
        raise RuntimeError(f"{method} {path}: HTTP {status}: {body[:200]!r}")
    return json.loads(body)


def wait_ready(proc: Proc, port: int, path: str, timeout: float, interval: float = 0.01) -> float:
    """Poll ``path`` until it answers 200; returns the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.output_tail()}")
        try:
            status, _ = http_request(port, "GET", path, timeout=1.0)
            if status == 200:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(interval)
    raise RuntimeError(f"{proc.name} not ready within {timeout:g} s:\n{proc.output_tail()}")


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB, from /proc."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


# -- the daemon --------------------------------------------------------------------------------


def install_plugin(target: Path) -> Path:
    """pip-install the example httpjson plugin into ``target``, as the tests do: its entry point
    is how pipecored finds it."""
    source = target.parent / "plugin-src"
    shutil.copytree(EXAMPLE_PLUGIN, source)  # a build writes into its source tree
    subprocess.run(
        [
            sys.executable,
            *("-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"),
            *("--disable-pip-version-check", "--target", str(target), str(source)),
        ],
        check=True,
        capture_output=True,
    )
    return target


def child_env(plugin_site: Path, tree: Path = ROOT) -> dict[str, str]:
    """The environment of a child: the example plugin, then pipecored and its built-in plugins
    from ``tree`` (this checkout, or another revision's exported for an A/B run: ahead of the
    editable install on the path)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPECORE", "PYTEST"))}
    builtin = sorted(str(p) for p in (tree / "plugins").glob("*") if p.is_dir())
    env["PYTHONPATH"] = os.pathsep.join(
        [
            str(plugin_site),
            str(tree),
            *(builtin if tree != ROOT else []),
            *filter(None, [os.environ.get("PYTHONPATH")]),
        ]
    )
    env["PYTHONUNBUFFERED"] = "0"
    # Children run with this checkout as their working directory, which `python -m` would put
    # ahead of PYTHONPATH: an A/B's other tree would never be imported (it was not, until this
    # was set: every --against before 2026-11-29 ran this tree twice).
    env["PYTHONSAFEPATH"] = "1"
    return env


def check_tree(env: dict[str, str], tree: Path) -> None:
    """Fail unless a child with ``env`` imports pipecored from ``tree``."""
    found = subprocess.run(
        [sys.executable, "-c", "import pipecored; print(pipecored.__file__)"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(tree.resolve()):
        raise RuntimeError(f"the daemon of {tree} would import pipecored from {found}")


def tenant_yaml(i: int, provider_url: str, name: str | None = None) -> str:
    return (
        f"name: {json.dumps(name or f'Tenant {i}')}\n"
        f'apiKeys: ["{tenant_key(i)}"]\n'
        "channels:\n"
        "  sms:\n"
        "    provider: httpjson\n"
        f"    baseUrl: {provider_url}\n"
        f'    credentials: {{token: "{PROVIDER_TOKEN}-{i}", sender: "+15550000{i % 1000:03d}"}}\n'
    )


def write_config(
    root: Path,
    *,
    db: Path | str,
    provider_url: str,
    tenants: int,
    delivery: dict[str, Any] | None = None,
) -> Path:
    """A config dir with ``tenants`` tenant files whose sms channel goes to ``provider_url``.
    ``db`` is a SQLite file outside the config dir, as in the tests, or a store URL
    (``postgresql://...``)."""
    (root / "tenants").mkdir(parents=True)
    daemon = {
        "store": db if isinstance(db, str) else f"sqlite:///{db}",
        "auth": {"adminKeys": [ADMIN_KEY]},
        "delivery": {"timeout": "10s", **(delivery or {})},
        "logging": {"level": "info", "format": "json"},
    }
    # JSON is YAML: no YAML library needed to write it
    (root / "pipecored.yaml").write_text(json.dumps(daemon, indent=2), encoding="utf-8")
    for i in range(tenants):
        (root / "tenants" / f"{tenant_id(i)}.yaml").write_text(
            tenant_yaml(i, provider_url), encoding="utf-8"
        )
    return root


@dataclass
class Workdir:
    """The run's temporary folder: logs, config dirs, databases, the plugin; ``against``, an
    earlier revision's tree exported for an A/B run (``--against REV``)."""

    path: Path
    plugin_site: Path
    against: tuple[str, Path] | None = None

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    def fresh(self, name: str) -> Path:
        folder = self.path / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        return folder


def start_daemon(
    procs: Procs,
    work: Workdir,
    config: Path,
    name: str,
    tree: Path = ROOT,
    *,
    wrapper: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> tuple[Proc, int]:
    """``pipecored serve`` from ``tree`` (this checkout unless an A/B run names another), run
    under ``wrapper`` (valgrind, say) with ``env`` added to the children's environment."""
    port = free_port()
    child = {**child_env(work.plugin_site, tree), **(env or {})}
    if tree != ROOT:
        check_tree(child, tree)
    argv = [sys.executable, "-m", "pipecored", "serve", "--config", str(config)]
    proc = procs.start(name, [*wrapper, *argv, "--port", str(port)], env=child)
    return proc, port


def start_fake_provider(procs: Procs, work: Workdir, name: str, delay: float) -> tuple[Proc, int]:
    port = free_port()
    proc = procs.start(
        name,
        [sys.executable, "-m", "bench.fake_provider", "--port", str(port), "--delay", str(delay)],
        env=child_env(work.plugin_site),
    )
    wait_ready(proc, port, "/stats", timeout=20)
    return proc, port


def start_app(
    procs: Procs, work: Workdir, app: str, env: dict[str, str] | None = None, name: str = ""
) -> tuple[Proc, int]:
    """One of the baselines on the daemon's uvicorn settings (uvloop, httptools, no access
    log): ``bench.bare_app`` (the bare endpoint), ``bench.durable_app`` (the same plus
    pipecored's store, in ``BENCH_DB``) or ``bench.floor_app`` (the minimal durable gateway);
    ``env`` adds to the environment."""
    port = free_port()
    name = name or app.partition(":")[0].rpartition(".")[2]
    proc = procs.start(
        name,
        [
            sys.executable,
            *("-m", "uvicorn", app, "--host", HOST, "--port", str(port)),
            *("--loop", "uvloop", "--http", "httptools", "--no-access-log"),
            *("--log-level", "warning"),
        ],
        env={**child_env(work.plugin_site), **(env or {})},
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{name} exited:\n{proc.output_tail()}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return proc, port
        time.sleep(0.02)
    raise RuntimeError(f"{name} not listening")


def export_revision(rev: str, target: Path) -> Path:
    """``git archive`` of ``rev`` unpacked into ``target``: the repository is only read."""
    target.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)
