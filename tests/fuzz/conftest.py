"""What the fuzz tests share: one real daemon for the whole module (schemathesis makes a test
per operation, and a daemon per test would cost more than the fuzzing), and the error-shape
check every fuzzed response must pass."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    ConfigDir,
    Daemon,
    default_daemon_settings,
    free_port,
    httpjson_channel,
)
from tests.fakes.httpjson import HttpJsonGateway

ACME_KEY = "acme-key-0123456789"
GLOBEX_KEY = "globex-key-0123456789"
DEMO_KEY = "demo-key-0123456789"
TENANTS = ("acme", "globex", "demo")

_SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def error_shape_problem(status: int, content_type: str, body: bytes) -> str | None:
    """Why a 4xx/5xx response is not the SPEC's ``{"error": {"code", "message"}}``, or None."""
    import json

    if not content_type.startswith("application/json"):
        return f"{status} with content-type {content_type!r}"
    try:
        data: Any = json.loads(body)
    except ValueError:
        return f"{status} with a body that is not JSON: {body[:200]!r}"
    if not isinstance(data, dict) or set(data) != {"error"} or not isinstance(data["error"], dict):
        return f"{status} body is not {{'error': {{...}}}}: {data!r}"
    error = data["error"]
    if not isinstance(error.get("code"), str) or not _SNAKE.match(error["code"]):
        return f"{status} error code is not snake_case: {error!r}"
    if not isinstance(error.get("message"), str) or not error["message"]:
        return f"{status} error has no message: {error!r}"
    if b"Traceback" in body:
        return f"{status} body has a stack trace"
    return None


def write_tenants(cfg: ConfigDir, gateway_url: str) -> None:
    """The same three tenants as ``config_dir`` in tests/conftest.py."""
    cfg.write_tenant(
        "acme",
        {
            "name": "Acme",
            "apiKeys": [ACME_KEY],
            "channels": {
                "sms": httpjson_channel(gateway_url),
                "email": httpjson_channel(gateway_url),
                "whatsapp": {**httpjson_channel(gateway_url), "isActive": False},
            },
        },
    )
    cfg.write_tenant(
        "globex",
        {
            "name": "Globex",
            "apiKeys": [GLOBEX_KEY],
            "channels": {"whatsapp": httpjson_channel(gateway_url)},
        },
    )
    cfg.write_tenant(
        "demo",
        {"name": "Demo", "apiKeys": [DEMO_KEY], "channels": {"sms": {"provider": "console"}}},
    )


@dataclass
class FuzzDaemon:
    daemon: Daemon
    message_ids: list[str]  # real messages (acme's), for the routes that take an id

    @property
    def url(self) -> str:
        return self.daemon.url


@pytest.fixture(scope="module")
def fuzz_daemon(
    tmp_path_factory: pytest.TempPathFactory, httpjson_site: Path
) -> Iterator[FuzzDaemon]:
    """A real ``pipecored serve`` with acme/globex/demo and two of acme's messages, shared by
    a module's fuzz tests."""
    import os

    gateway = HttpJsonGateway().start()
    root = tmp_path_factory.mktemp("fuzz")
    config = root / "config"
    (config / "tenants").mkdir(parents=True)
    cfg = ConfigDir(config)
    settings = default_daemon_settings(root / "pipecored.db")
    # The fuzzer sends wrong keys by the thousand from one address; the per-address throttle
    # (tested in tests/api/test_hardening.py) would answer its valid requests 429 too.
    settings["auth"]["failedKeyLimit"] = {"perSecond": 1000, "burst": 100_000}
    cfg.write_daemon(settings)
    write_tenants(cfg, gateway.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPECORE", "PYTEST"))}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(httpjson_site), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    daemon = Daemon(config, free_port(), env, root / "daemon.log")
    try:
        daemon.start()
        with daemon.client(ACME_KEY) as client:
            ids = [
                client.post("/messaging/send/sms", json={"to": "+34600111222", "body": text})
                .raise_for_status()
                .json()["id"]
                for text in ("hola", "adios")
            ]
        yield FuzzDaemon(daemon, ids)
    finally:
        daemon.ensure_stopped()
        gateway.stop()
