"""Charts as inline SVG, drawn on the server: the page needs no script and no request beyond
itself, and a screen reader gets each chart's numbers as a table beside it.

:func:`bar_chart` and :func:`line_chart` turn a series of values per bucket into shapes in a
fixed coordinate system (the SVG's ``viewBox``); the template draws them and CSS colours them by
class, so the Content-Security-Policy needs no inline style.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

WIDTH = 640
HEIGHT = 220
LEFT = 52
RIGHT = 8
TOP = 10
BOTTOM = 28
PLOT_W = WIDTH - LEFT - RIGHT
PLOT_H = HEIGHT - TOP - BOTTOM
MAX_X_LABELS = 8

Value = float | None
Formatter = Callable[[float], str]


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    css: str  # the CSS class that colours it
    values: Sequence[Value]


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    title: str


@dataclass(frozen=True, slots=True)
class Line:
    css: str
    points: str  # the polyline's points attribute
    dots: tuple[Point, ...]


@dataclass(frozen=True, slots=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    id: str
    title: str
    description: str
    labels: Sequence[str]
    series: Sequence[Series]
    formatted: Sequence[Sequence[str]]  # per series, per bucket: the table's cells
    y_ticks: Sequence[Tick]
    x_ticks: Sequence[Tick]
    bars: Sequence[Bar] = field(default_factory=tuple)
    lines: Sequence[Line] = field(default_factory=tuple)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    plot_w: int = PLOT_W
    plot_h: int = PLOT_H

    @property
    def empty(self) -> bool:
        return all(v is None or v == 0 for s in self.series for v in s.values)

    @property
    def rows(self) -> list[tuple[str, list[str]]]:
        """The data table: one row per bucket, one cell per series."""
        return [
            (label, [cells[i] for cells in self.formatted]) for i, label in enumerate(self.labels)
        ]


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above ``value`` (an axis's top)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)


def _y(value: float, top: float) -> float:
    return TOP + PLOT_H - value / top * PLOT_H


Y_INTERVALS = 5  # a nice_ceiling of 5 or more splits into fifths that are whole numbers


def _y_ticks(top: float, fmt: Formatter) -> list[Tick]:
    return [
        Tick(round(_y(top * i / Y_INTERVALS, top), 1), fmt(top * i / Y_INTERVALS))
        for i in range(Y_INTERVALS + 1)
    ]


def _x_ticks(labels: Sequence[str], slot: float) -> list[Tick]:
    every = max(1, math.ceil(len(labels) / MAX_X_LABELS))
    return [
        Tick(round(LEFT + (i + 0.5) * slot, 1), label)
        for i, label in enumerate(labels)
        if i % every == 0
    ]


def _cells(series: Sequence[Series], fmt: Formatter) -> list[list[str]]:
    return [["\u2013" if v is None else fmt(v) for v in s.values] for s in series]


def bar_chart(
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    fmt: Formatter,
) -> Chart:
    """Bars side by side per bucket, one per series (counts: the axis is at least 0 to 5)."""
    top = nice_ceiling(max((v or 0.0 for s in series for v in s.values), default=0.0))
    top = max(top, float(Y_INTERVALS))
    slot = PLOT_W / max(1, len(labels))
    width = slot * 0.8 / max(1, len(series))
    bars = []
    for k, s in enumerate(series):
        for i, value in enumerate(s.values):
            if not value:
                continue
            height = value / top * PLOT_H
            bars.append(
                Bar(
                    x=round(LEFT + i * slot + slot * 0.1 + k * width, 2),
                    y=round(TOP + PLOT_H - height, 2),
                    width=round(max(width - 0.5, 0.5), 2),
                    height=round(height, 2),
                    css=s.css,
                    title=f"{labels[i]}: {s.name} {fmt(value)}",
                )
            )
    return Chart(
        id=chart_id,
        title=title,
        description=description,
        labels=labels,
        series=series,
        formatted=_cells(series, fmt),
        y_ticks=_y_ticks(top, fmt),
        x_ticks=_x_ticks(labels, slot),
        bars=bars,
    )


def line_chart(
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    fmt: Formatter,
    *,
    top: float | None = None,
) -> Chart:
    """A line per series through the buckets that have a value (a gap where one has none)."""
    if top is None:
        top = nice_ceiling(max((v or 0.0 for s in series for v in s.values), default=0.0))
    slot = PLOT_W / max(1, len(labels))
    lines = []
    for s in series:
        dots = [
            Point(
                round(LEFT + (i + 0.5) * slot, 2),
                round(_y(min(value, top), top), 2),
                f"{labels[i]}: {s.name} {fmt(value)}",
            )
            for i, value in enumerate(s.values)
            if value is not None
        ]
        points = " ".join(f"{p.x},{p.y}" for p in dots)
        lines.append(Line(css=s.css, points=points, dots=tuple(dots)))
    return Chart(
        id=chart_id,
        title=title,
        description=description,
        labels=labels,
        series=series,
        formatted=_cells(series, fmt),
        y_ticks=_y_ticks(top, fmt),
        x_ticks=_x_ticks(labels, slot),
        lines=lines,
    )
