"""Route choice around open circuits, as a table."""

from __future__ import annotations

import pytest

from pipecored.routing import Go, Wait, choose_route

ROUTES = ("twilio", "meta", "console")


@pytest.mark.parametrize(
    ("start", "open_circuits", "expected"),
    [
        pytest.param(0, set(), Go(0), id="own-route"),
        pytest.param(1, set(), Go(1), id="stays-on-its-fallback"),
        pytest.param(0, {"twilio"}, Go(1, (0,)), id="skips-an-open-circuit"),
        pytest.param(0, {"twilio", "meta"}, Go(2, (0, 1)), id="skips-two"),
        pytest.param(2, {"console"}, Go(0, (2,)), id="wraps-to-the-first-route"),
        pytest.param(1, {"meta", "console"}, Go(0, (1, 2)), id="wraps-past-two"),
        pytest.param(0, set(ROUTES), Wait(0), id="all-open-waits"),
        pytest.param(7, {"console"}, Go(0, (2,)), id="index-past-the-end-is-the-last-route"),
    ],
)
def test_choose_route(start: int, open_circuits: set[str], expected: Go | Wait) -> None:
    assert choose_route(ROUTES, start, allows=lambda p: p not in open_circuits) == expected


def test_the_circuits_are_asked_only_until_one_allows() -> None:
    # asking may take a circuit's single trial call, so no route past the chosen one is asked
    asked: list[str] = []

    def allows(provider: str) -> bool:
        asked.append(provider)
        return provider == "meta"

    assert choose_route(ROUTES, 0, allows=allows) == Go(1, (0,))
    assert asked == ["twilio", "meta"]


def test_a_single_route_with_its_circuit_open_waits() -> None:
    assert choose_route(("twilio",), 0, allows=lambda p: False) == Wait(0)
