"""Fixtures shared by every test: a fresh plugin manager, a config dir, an in-process app,
a real daemon process over loopback, and the example third-party plugin installed with pip."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from pipecored.api.app import create_app
from pipecored.gateway import Gateway
from pipecored.plugins import LoadedProviders, collect_providers, get_plugin_manager
from tests.fakes.httpjson import HttpJsonGateway

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN = ROOT / "examples" / "pipecored-httpjson"

ADMIN_KEY = "admin-key-0123456789abcdef"
HTTPJSON_TOKEN = "hj-token-s3cr3t-0123456789"
HTTPJSON_SIGNING = "hj-signing-s3cr3t-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def httpjson_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin, pip-installed into a folder of its own exactly as a third party's
    distribution would be (its entry point is how pipecored finds it)."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / EXAMPLE_PLUGIN.name
    shutil.copytree(EXAMPLE_PLUGIN, source)  # a build writes into its source tree
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    return target


@pytest.fixture
def providers(httpjson_site: Path, monkeypatch: pytest.MonkeyPatch) -> LoadedProviders:
    """Built-ins and the example plugin, loaded through the entry-point group."""
    monkeypatch.syspath_prepend(str(httpjson_site))
    import importlib

    importlib.invalidate_caches()
    return collect_providers(get_plugin_manager())


@pytest.fixture
def fake_gateway() -> Iterator[HttpJsonGateway]:
    gateway = HttpJsonGateway().start()
    yield gateway
    gateway.stop()


def httpjson_channel(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "provider": "httpjson",
        "baseUrl": url,
        "credentials": {"token": HTTPJSON_TOKEN, "signingSecret": HTTPJSON_SIGNING},
        **extra,
    }


@dataclass
class ConfigDir:
    path: Path

    def write_daemon(self, settings: dict[str, Any]) -> None:
        (self.path / "pipecored.yaml").write_text(yaml.safe_dump(settings), encoding="utf-8")

    def write_tenant(self, tenant_id: str, data: dict[str, Any] | str) -> Path:
        path = self.path / "tenants" / f"{tenant_id}.yaml"
        text = data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True)
        path.write_text(text, encoding="utf-8")
        return path


def default_daemon_settings(db: Path, **delivery: Any) -> dict[str, Any]:
    return {
        "store": f"sqlite:///{db}",
        "auth": {"adminKeys": [ADMIN_KEY]},
        "delivery": {
            "retryBackoff": {"initial": "10ms", "max": "50ms"},
            "timeout": "2s",
            **delivery,
        },
        "logging": {"format": "json"},
    }


@pytest.fixture
def config_dir(tmp_path: Path, fake_gateway: HttpJsonGateway) -> ConfigDir:
    """Two tenants on the fake gateway (acme: sms + email; globex: whatsapp) and a console one."""
    root = tmp_path / "config"
    (root / "tenants").mkdir(parents=True)
    cfg = ConfigDir(root)
    cfg.write_daemon(default_daemon_settings(tmp_path / "pipecored.db"))
    cfg.write_tenant(
        "acme",
        {
            "name": "Acme",
            "apiKeys": ["acme-key-0123456789"],
            "channels": {
                "sms": httpjson_channel(fake_gateway.url),
                "email": httpjson_channel(fake_gateway.url),
                "whatsapp": {**httpjson_channel(fake_gateway.url), "isActive": False},
            },
        },
    )
    cfg.write_tenant(
        "globex",
        {
            "name": "Globex",
            "apiKeys": ["globex-key-0123456789"],
            "channels": {"whatsapp": httpjson_channel(fake_gateway.url)},
        },
    )
    cfg.write_tenant(
        "demo",
        {
            "name": "Demo",
            "apiKeys": ["demo-key-0123456789"],
            "channels": {"sms": {"provider": "console"}},
        },
    )
    return cfg


@pytest.fixture
async def app_client(
    config_dir: ConfigDir, providers: LoadedProviders
) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway]]:
    """The whole app in process (real SQLite file, real delivery worker, no file watcher)."""
    gateway = Gateway(config_dir.path, providers, metrics_registry=CollectorRegistry(), watch=False)
    gateway.load()
    app = create_app(gateway)
    await gateway.start()
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://pipecored") as client:
            yield client, gateway
    finally:
        await gateway.stop()


@pytest.fixture
def app_client_factory(config_dir: ConfigDir, providers: LoadedProviders, tmp_path: Path) -> Any:
    """Like ``app_client``, with delivery settings of the test's own (an async context manager)."""
    import contextlib

    @contextlib.asynccontextmanager
    async def make(
        delivery: dict[str, Any] | None = None,
    ) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway]]:
        config_dir.write_daemon(
            default_daemon_settings(tmp_path / "pipecored.db", **(delivery or {}))
        )
        gateway = Gateway(
            config_dir.path, providers, metrics_registry=CollectorRegistry(), watch=False
        )
        gateway.load()
        app = create_app(gateway)
        await gateway.start()
        try:
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://pipecored"
            ) as client:
                yield client, gateway
        finally:
            await gateway.stop()

    return make


# How long a test waits for something that must happen: a generous bound on correctness, never a
# speed check (a loaded 2-core machine runs everything several times slower).
WAIT: float = 30.0


async def eventually(predicate: Callable[[], Any], timeout: float = WAIT) -> Any:  # noqa: ASYNC109
    """Await ``predicate()`` (sync or async) until it returns something truthy."""
    import asyncio
    import inspect

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Daemon:
    """A real ``pipecored serve`` process on a loopback port."""

    config: Path
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    logs: list[str] = field(default_factory=list)
    # the process's file descriptor limit (soft and hard), as a service manager would set it
    open_files: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = WAIT) -> Daemon:
        self._log = self.log_path.open("ab")
        command = [
            "-m",
            "pipecored",
            "serve",
            "--config",
            str(self.config),
            "--port",
            str(self.port),
        ]
        if self.open_files is not None:
            # set in the child before it becomes the daemon (no preexec_fn: the tests run threads)
            limit = f"resource.setrlimit(resource.RLIMIT_NOFILE, ({self.open_files},) * 2)"
            command = [
                "-c",
                f"import os, resource, sys; {limit}; os.execv(sys.executable, sys.argv[1:])",
                sys.executable,
                *command,
            ]
        self.proc = subprocess.Popen(
            [sys.executable, *command],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready in {timeout}s:\n{self.output()}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code

    def ensure_stopped(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.wait()

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.signal(signal.SIGTERM)
        return self.wait()

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait()

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def client(self, key: str | None = None) -> httpx.Client:
        headers = auth(key) if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


@pytest.fixture
def daemon_factory(tmp_path: Path, httpjson_site: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def make(config: Path, *, env: dict[str, str] | None = None, port: int | None = None) -> Daemon:
        environment = {
            k: v for k, v in os.environ.items() if not k.startswith(("PIPECORE", "PYTEST"))
        }
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(httpjson_site), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        environment.update(env or {})
        daemon = Daemon(
            config, port or free_port(), environment, tmp_path / f"daemon-{len(started)}.log"
        )
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        daemon.ensure_stopped()


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)


EXAMPLE_TENANTS = ("demo", "tableflow_123", "genda_456", "roe_789")


def example_config(destination: Path) -> Path:
    """A copy of the example config as the repository ships it: not the database the quick
    start writes into config/, nor a tenant a user added there, since the tests also run on a
    clone where the README's quick start was used."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", "config"], cwd=ROOT, capture_output=True, check=False
    )
    if listed.returncode == 0 and listed.stdout:
        files = [p.removeprefix("config/") for p in listed.stdout.decode().split("\0") if p]
    else:  # an unpacked release rather than a git checkout
        files = ["pipecored.yaml", *(f"tenants/{t}.yaml" for t in EXAMPLE_TENANTS)]
    for relative in files:
        (destination / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / "config" / relative, destination / relative)
    return destination


ONE_TENANT_KEY = "acme-key-0123456789"


def one_tenant_config(
    tmp_path: Path, gateway_url: str, *, channel: str = "sms", **delivery: Any
) -> ConfigDir:
    """A config dir with one tenant, acme (key :data:`ONE_TENANT_KEY`), whose ``channel`` goes
    to the httpjson fake at ``gateway_url``; ``delivery`` settings over the tests' defaults."""
    root = tmp_path / "config"
    (root / "tenants").mkdir(parents=True)
    cfg = ConfigDir(root)
    cfg.write_daemon(default_daemon_settings(tmp_path / "pipecored.db", **delivery))
    cfg.write_tenant(
        "acme",
        {
            "name": "Acme",
            "apiKeys": [ONE_TENANT_KEY],
            "channels": {channel: httpjson_channel(gateway_url)},
        },
    )
    return cfg


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of the test's own, dropped after it (tests/pg.py): skipped, saying
    why, without ``PIPECORED_TEST_POSTGRES_DSN``; a failure where ``PIPECORED_TEST_REQUIRE``
    names postgres (CI)."""
    from tests.pg import postgres_database

    with postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A daemon's ``store:`` for an end-to-end test that runs on both stores: a SQLite file in
    the test's directory, or a database of the test's own (as :func:`postgres_url`)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pipecored.db'}"
    return str(request.getfixturevalue("postgres_url"))
