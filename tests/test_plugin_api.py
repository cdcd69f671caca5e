"""The plugin boundary: built-ins use only the public API, every hook is documented, and the
documented example is the one the tests install."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import pipecored
from pipecored import hookspecs
from pipecored.errors import PipecoreError
from pipecored.plugins import collect_providers, get_plugin_manager
from tests.conftest import EXAMPLE_PLUGIN, ROOT

PLUGIN_SOURCES = sorted(
    [*(ROOT / "plugins").rglob("*.py"), *(EXAMPLE_PLUGIN).rglob("*.py")], key=str
)


@pytest.mark.parametrize(
    "path", [pytest.param(p, id=str(p.relative_to(ROOT))) for p in PLUGIN_SOURCES]
)
def test_plugins_import_only_the_public_api(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
            assert not [n for n in names if n.startswith("pipecored.")], (path, names)
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").split(".")[0] == "pipecored"
        ):
            assert node.module == "pipecored", f"{path}: imports {node.module}"
            for alias in node.names:
                assert alias.name in pipecored.__all__, f"{path}: {alias.name} is not public"


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
