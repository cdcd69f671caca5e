"""``pipecored check``, ``pipecored plugins`` and ``pipecored serve``'s refusal of a bad config,
each run as the operator runs it: a separate process."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from pipecored import __version__
from tests.conftest import ROOT, ConfigDir, Daemon, example_config

# FILE: path.to.key: message
ISSUE_LINE = re.compile(r"^(pipecored\.yaml|tenants/[^:/]+\.yaml): [A-Za-z0-9_.()]+: \S.*$")


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PIPECORE")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pipecored", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def write(root: Path, files: dict[str, str]) -> Path:
    (root / "tenants").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def test_check_the_example_config(tmp_path: Path) -> None:
    config = example_config(tmp_path / "config")
    result = run("check", "--config", str(config))
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"{config}: ok\n",
        "",
    )


def test_check_defaults_to_config_in_the_working_dir(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    result = run("check", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "config: ok\n")


def test_check_prints_every_error_of_every_file(tmp_path: Path) -> None:
    root = write(
        tmp_path / "config",
        {
            "pipecored.yaml": "delivery: {timeout: 5 minutes, maxAttempts: 0}\n",
            "tenants/acme.yaml": """\
                name: Acme
                channels:
                  sms:
                    provider: twilio
                    isActiv: true
                    credentials: {accountSid: AC1, authToken: t, phoneNumber: "+15005550006"}
                """,
            "tenants/bravo.yaml": """\
                name: Bravo
                apiKeys: ["${BRAVO_KEY}"]
                channels:
                  whatsapp:
                    provider: meta
                    credentials: {accessToken: a, phoneNumberId: "1", verifyToken: v}
                """,
            "tenants/charlie.yaml": "name: Charlie\nchannels: {sms: {provider: console}}\n",
            "tenants/Delta.yaml": "name: Delta\n",
        },
    )
    result = run("check", "--config", str(root))
    assert result.returncode == 1
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "pipecored.yaml: delivery.maxAttempts: Input should be greater than or equal to 1",
        "pipecored.yaml: delivery.timeout: expected a duration such as 200ms, 1s, 5m or 24h",
        "tenants/Delta.yaml: (root): tenant id (the file name) must match [a-z0-9_-]{1,64}",
        "tenants/acme.yaml: channels.sms.isActiv: unknown key",
        "tenants/bravo.yaml: apiKeys.0: environment variable BRAVO_KEY is not set",
    ]
    assert all(ISSUE_LINE.match(line) for line in result.stdout.splitlines())


def test_check_never_prints_a_secret(tmp_path: Path) -> None:
    secrets = {
        "apiKey": "s3cr3t-api-key-AAAA",
        "authToken": "s3cr3t-auth-token-BBBB",
        "env": "s3cr3t-from-env-CCCC",
        "unterminated": "s3cr3t-unterminated-DDDD",
        "wrongType": "s3cr3t-wrong-type-EEEE",
        "typo": "s3cr3t-typo-FFFF",
        "admin": "s3cr3t-admin-GGGG",
    }
    root = write(
        tmp_path / "config",
        {
            "pipecored.yaml": f"auth: {{adminKeys: [{secrets['admin']}], adminKey: x}}\n",
            "tenants/acme.yaml": f"""\
                name: Acme
                apiKeys: [{secrets["apiKey"]}]
                apiKey: {secrets["apiKey"]}
                channels:
                  sms:
                    provider: twilio
                    isActive: {secrets["wrongType"]}
                    credentials:
                      accountSid: AC1
                      authToken: {secrets["authToken"]}
                      authTokn: {secrets["typo"]}
                  whatsapp:
                    provider: meta
                    credentials: {{accessToken: "${{ACME_META_TOKEN}}", phoneNumberId: 1}}
                """,
            "tenants/bravo.yaml": f"""\
                name: Bravo
                apiKeys: [{secrets["apiKey"]}]
                channels:
                  sms:
                    provider: console
                    credentials: {{token: "{secrets["unterminated"]}}}
                """,
            "tenants/charlie.yaml": f"name: Charlie\napiKeys: [{secrets['admin']}]\n",
        },
    )
    result = run("check", "--config", str(root), env={"ACME_META_TOKEN": secrets["env"]})
    assert result.returncode == 1
    # The errors are all there, each next to a secret...
    assert result.stdout.splitlines() == [
        "pipecored.yaml: auth.adminKey: unknown key",
        "tenants/acme.yaml: channels.sms.isActive: "
        "Input should be a valid boolean, unable to interpret input",
        "tenants/acme.yaml: apiKey: unknown key",
        "tenants/acme.yaml: channels.whatsapp.credentials.verifyToken: required by provider meta",
        "tenants/bravo.yaml: (root): line 7, column 1: found unexpected end of stream",
    ]
    for name, secret in secrets.items():  # ...and no secret is
        assert secret not in result.stdout + result.stderr, name


def test_check_a_missing_dir(tmp_path: Path) -> None:
    result = run("check", "--config", str(tmp_path / "nope"))
    assert (result.returncode, result.stdout) == (
        1,
        f"{tmp_path / 'nope'}: (root): not a directory\n",
    )


@pytest.mark.parametrize("name", ["nope", "pipecored.yaml"])
def test_serve_refuses_what_is_not_a_config_dir(tmp_path: Path, name: str) -> None:
    (tmp_path / "pipecored.yaml").write_text("{}\n")
    result = run("serve", "--config", str(tmp_path / name), "--port", "0")
    assert (result.returncode, result.stderr) == (
        1,
        f"{tmp_path / name}: (root): not a directory\n",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipecored.yaml"]  # nothing created


def _plugin_rows(output: str) -> dict[str, tuple[str, str]]:
    header, *rows = output.splitlines()
    assert re.split(r"\s{2,}", header) == ["PROVIDER", "CHANNELS", "DISTRIBUTION"]
    table: dict[str, tuple[str, str]] = {}
    for row in rows:
        name, channels, distribution = re.split(r"\s{2,}", row)
        table[name] = (channels, distribution)
    return table


def test_plugins_lists_providers_channels_and_distributions(httpjson_site: Path) -> None:
    result = run("plugins", env={"PYTHONPATH": str(httpjson_site)})
    assert (result.returncode, result.stderr) == (0, "")
    builtin = f"pipecored {importlib.metadata.version('pipecored')}"
    assert _plugin_rows(result.stdout) == {
        "console": ("email,sms,whatsapp", builtin),
        "httpjson": ("chat,email,sms,whatsapp", "pipecored-httpjson 1.0.0"),
        "meta": ("whatsapp", builtin),
        "resend": ("email", builtin),
        "sendgrid": ("email", builtin),
        "twilio": ("sms,whatsapp", builtin),
    }


def test_plugins_without_the_third_party_plugin() -> None:
    result = run("plugins", env={"PYTHONPATH": ""})
    assert result.returncode == 0
    assert set(_plugin_rows(result.stdout)) == {"console", "meta", "resend", "sendgrid", "twilio"}


def test_check_accepts_a_third_party_provider(tmp_path: Path, httpjson_site: Path) -> None:
    root = write(
        tmp_path / "config",
        {
            "tenants/acme.yaml": """\
                name: Acme
                channels:
                  sms: {provider: httpjson, baseUrl: "https://gw.example", credentials: {token: t}}
                """
        },
    )
    assert run("check", "--config", str(root), env={"PYTHONPATH": ""}).returncode == 1
    with_plugin = run("check", "--config", str(root), env={"PYTHONPATH": str(httpjson_site)})
    assert (with_plugin.returncode, with_plugin.stdout) == (0, f"{root}: ok\n")


@pytest.mark.parametrize(
    ("daemon_file", "issue"),
    [
        pytest.param(
            "server: {port: http}\n",
            "pipecored.yaml: server.port: Input should be a valid integer, "
            "unable to parse string as an integer",
            id="wrong-type",
        ),
        pytest.param(
            "auth: {adminKeys: ['${PIPECORE_ADMIN_KEY}']}\n",
            "pipecored.yaml: auth.adminKeys.0: environment variable PIPECORE_ADMIN_KEY is not set",
            id="missing-env",
        ),
    ],
)
def test_serve_refuses_an_invalid_daemon_file(tmp_path: Path, daemon_file: str, issue: str) -> None:
    root = write(tmp_path / "config", {"pipecored.yaml": daemon_file})
    result = run("serve", "--config", str(root), "--port", "0")
    assert (result.returncode, result.stderr.splitlines()) == (1, [issue])


def test_version() -> None:
    result = run("--version")
    assert (result.returncode, result.stdout) == (0, f"pipecored {__version__}\n")


def _log_lines(output: str) -> list[dict[str, object]]:
    """Every line of a daemon's output, each a JSON log record (a plain-text line fails here)."""
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_serve_on_a_taken_port_says_so_in_one_line_and_starts_nothing(tmp_path: Path) -> None:
    root = write(tmp_path / "config", {"pipecored.yaml": "store: sqlite:///p.db\n"})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--config", str(root), "--port", str(port))
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    records = _log_lines(result.stdout + result.stderr)
    errors = [r for r in records if r["level"] == "error"]
    assert [(r["event"], r["port"]) for r in errors] == [("pipecored.listen_failed", port)]
    assert "in use" in str(errors[0]["error"])
    assert "pipecored.started" not in [r["event"] for r in records]
    assert not (root / "p.db").exists()  # the store was never opened


def test_serve_logs_the_address_it_listens_on(
    config_dir: ConfigDir, daemon_factory: Callable[..., Daemon]
) -> None:
    daemon = daemon_factory(config_dir.path).start()
    assert daemon.stop() == 0
    events = [(r["event"], r.get("url")) for r in _log_lines(daemon.output())]
    assert ("pipecored.listening", daemon.url) in events
    assert events.index(("pipecored.started", None)) < events.index(
        ("pipecored.listening", daemon.url)
    )


def test_keys_new_needs_to_be_told_whom_the_key_is_for() -> None:
    bare = run("keys", "new")
    assert bare.returncode == 2
    assert bare.stdout == ""
    assert "one of the arguments --tenant --admin is required" in bare.stderr
    both = run("keys", "new", "--admin", "--tenant", "acme")
    assert both.returncode == 2
    assert "not allowed with argument" in both.stderr

    admin = run("keys", "new", "--admin")
    assert admin.returncode == 0, admin.stderr
    assert "an admin key: it acts as any tenant" in admin.stdout
    assert "auth.adminKeys in pipecored.yaml" in admin.stdout
    tenant = run("keys", "new", "--tenant", "acme")
    assert tenant.returncode == 0, tenant.stderr
    assert "a key for tenant acme" in tenant.stdout
    assert "adminKeys" not in tenant.stdout

    usage = run("keys", "new", "--help").stdout
    assert "--admin" in usage and "--tenant ID" in usage
