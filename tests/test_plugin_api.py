"""The plugin boundary: built-ins use only the public API, every hook is documented, and the
documented example is the one the tests install."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pipecored
from pipecored import hookspecs
from pipecored.errors import PipecoreError
from pipecored.plugins import collect_providers, get_plugin_manager
from pipecored.testing import private_imports
from tests.conftest import EXAMPLE_PLUGIN, ROOT

# The plugins' own code; their tests may use pipecored.testing.
PLUGIN_SOURCES = sorted(
    [*(ROOT / "plugins").rglob("*.py"), *(EXAMPLE_PLUGIN / "pipecored_httpjson").rglob("*.py")],
    key=str,
)


@pytest.mark.parametrize(
    "path", [pytest.param(p, id=str(p.relative_to(ROOT))) for p in PLUGIN_SOURCES]
)
def test_plugins_import_only_the_public_api(path: Path) -> None:
    assert private_imports(path) == []


@pytest.mark.parametrize(
    ("source", "found"),
    [
        pytest.param("from pipecored import Provider, hookimpl", [], id="public"),
        pytest.param("import pipecored", [], id="the-package"),
        pytest.param("from pipecored.http import USER_AGENT", ["pipecored.http"], id="module"),
        pytest.param("import pipecored.errors", ["pipecored.errors"], id="import-module"),
        pytest.param("from pipecored import Gateway", ["Gateway"], id="name-not-public"),
        pytest.param("from .errors import classify", [], id="relative"),
        pytest.param("from pipecored_twilio import x", [], id="another-package"),
    ],
)
def test_the_public_api_check_finds_private_imports(
    source: str, found: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "plugin.py"
    path.write_text(source, encoding="utf-8")
    assert private_imports(path) == found


def test_the_example_plugins_own_tests_pass_against_the_installed_plugin(
    httpjson_site: Path,
) -> None:
    """The example's tests use pipecored.testing as a third party's would; they run with the
    example's own pytest settings, against the copy pip installed (``-P``: not the source)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(PYTHONPATH=str(httpjson_site), PYTHONDONTWRITEBYTECODE="1")
    result = subprocess.run(
        [sys.executable, "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=EXAMPLE_PLUGIN,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout


def _hookspecs() -> list[str]:
    return [
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, "pipecored_spec")
    ]


def test_every_hookspec_has_a_docstring_and_a_documented_signature() -> None:
    doc = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    specs = _hookspecs()
    assert specs == ["register_alert_receivers", "register_providers"]
    for name in specs:
        fn = getattr(hookspecs, name)
        assert inspect.getdoc(fn), name
        params = ", ".join(inspect.signature(fn).parameters)
        assert f"### `{name}({params})`" in doc, name


def test_the_documented_example_is_the_installed_one() -> None:
    doc = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    for file in ("pyproject.toml", "pipecored_httpjson/__init__.py"):
        assert (EXAMPLE_PLUGIN / file).read_text(encoding="utf-8").rstrip() in doc, file


def test_the_documented_plugin_tests_are_the_examples_own() -> None:
    doc = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Testing your plugin") :]
    blocks = [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]
    tests = (EXAMPLE_PLUGIN / "tests" / "test_httpjson.py").read_text(encoding="utf-8")
    assert len(blocks) >= 3
    for block in blocks:
        assert block.strip() in tests, block


def test_every_builtin_is_found_through_the_entry_point_group() -> None:
    providers = collect_providers(get_plugin_manager())
    for name in ("console", "twilio", "meta", "resend", "sendgrid"):
        assert name in providers, name
        assert providers.distribution(name).startswith("pipecored "), name


def test_two_providers_with_one_name_are_refused_naming_both() -> None:
    class Twin(pipecored.Provider):
        name = "console"
        channels = frozenset({"sms"})

        async def send(
            self, message: pipecored.OutboundMessage, ctx: pipecored.SendContext
        ) -> pipecored.SendResult:
            raise AssertionError("never called")

    class Plugin:
        @staticmethod
        @pipecored.hookimpl
        def register_providers(register):  # type: ignore[no-untyped-def]
            register(Twin())

    pm = get_plugin_manager()
    pm.register(Plugin(), name="twin")
    with pytest.raises(PipecoreError, match=r"console.*registered by both"):
        collect_providers(pm)


def test_a_misspelled_hook_is_caught() -> None:
    class Typo:
        @staticmethod
        @pipecored.hookimpl
        def register_provider(register):  # type: ignore[no-untyped-def]
            pass

    pm = get_plugin_manager()
    pm.register(Typo(), name="typo")
    with pytest.raises(Exception, match="unknown hook"):
        pm.check_pending()
