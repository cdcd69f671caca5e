"""The dependencies pyproject declares: only what is used, bounded where pipecored relies on a
library's internals or on an API its minor releases have broken, and satisfied by what is
installed."""

from __future__ import annotations

import importlib.metadata
import tomllib

import pytest
import uvicorn
from packaging.requirements import Requirement

from tests.conftest import ROOT


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [Requirement(line) for line in project["dependencies"]]
    return {r.name.lower(): r for r in requirements}


def test_uvicorn_comes_without_the_extras_pipecored_does_not_use() -> None:
    # [standard] also brings websockets and python-dotenv; the daemon speaks neither
    requirements = declared()
    assert requirements["uvicorn"].extras == set()
    assert {"uvloop", "httptools"} <= set(requirements)


@pytest.mark.parametrize(
    ("name", "below"),
    [
        pytest.param("httpx-aiohttp", "0.3", id="httpx-aiohttp: pipecored.http uses its internals"),
        pytest.param("ruamel.yaml", "0.20", id="ruamel.yaml: minor releases broke its API"),
    ],
)
def test_libraries_pinned_below_their_next_minor(name: str, below: str) -> None:
    specifier = declared()[name].specifier
    assert below not in specifier and f"{below}.0" not in specifier
    assert any(spec.operator == "<" for spec in specifier)


def test_what_is_installed_satisfies_what_is_declared() -> None:
    for name, requirement in declared().items():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        version = importlib.metadata.version(name)
        assert requirement.specifier.contains(version, prereleases=True), (name, version)


async def _app(scope: object, receive: object, send: object) -> None:
    pass


def test_the_server_gets_its_fast_loop_and_parser() -> None:
    # what `pipecored serve` leaves to uvicorn's "auto" (cli.py passes neither)
    config = uvicorn.Config(app=_app, loop="auto", http="auto")
    config.load()
    assert config.http_protocol_class.__module__.endswith("httptools_impl")
    loop_factory = config.get_loop_factory()
    assert loop_factory is not None and loop_factory.__module__ == "uvloop"


def test_every_runtime_dependency_is_explained_in_the_docs() -> None:
    doc = (ROOT / "docs" / "dependencies.md").read_text(encoding="utf-8")
    for name in declared():
        assert f"| `{name}` |" in doc.lower(), name
