"""Plots as inline SVG, drawn on the server: no chart library, no JavaScript, no network.

Every text that comes from the database (model names) is escaped; the result is Markup that a
template inserts as is. Scores come in as fractions and are drawn in percent.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f")
WIDTH, HEIGHT = 720, 360
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 48


@dataclass(frozen=True)
class Point:
    x: float
    y: float  # a fraction
    label: str
    href: str = ""


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]  # one per group, fractions
    intervals: Sequence[tuple[float, float] | None] = ()


def _fmt(value: float) -> str:
    return f"{value:.1f}"


def _y_range(values: Sequence[float]) -> tuple[float, float]:
    """Percent bounds around the data, on multiples of 10."""
    low = math.floor(min(values) * 10) * 10
    high = math.ceil(max(values) * 10) * 10
    if high - low < 10:
        high = min(100, low + 10)
        low = high - 10
    return float(low), float(high)


def _y_axis(low: float, high: float, label: str) -> list[str]:
    parts = []
    step = 10 if high - low > 30 else 5
    tick = low
    while tick <= high + 1e-9:
        y = TOP + (HEIGHT - TOP - BOTTOM) * (1 - (tick - low) / (high - low))
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_fmt(y)}" y2="{_fmt(y)}" '
            'class="grid"/>'
            f'<text x="{LEFT - 6}" y="{_fmt(y + 4)}" text-anchor="end">{tick:g}</text>'
        )
        tick += step
    middle = TOP + (HEIGHT - TOP - BOTTOM) / 2
    parts.append(
        f'<text x="14" y="{_fmt(middle)}" text-anchor="middle" '
        f'transform="rotate(-90 14 {_fmt(middle)})">{escape(label)}</text>'
    )
    return parts


def _svg(parts: list[str], title: str) -> Markup:
    body = "".join(parts)
    return Markup(
        f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def _human(value: float) -> str:
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if value >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def scatter(
    points: Sequence[Point], title: str, x_label: str, y_label: str, log_x: bool = False
) -> Markup | None:
    """Average (y) against a size (x); each point links to its model. None without points."""
    points = [p for p in points if p.x is not None and (p.x > 0 or not log_x)]
    if not points:
        return None
    xs = [math.log10(p.x) if log_x else p.x for p in points]
    x_low, x_high = min(xs), max(xs)
    if log_x:
        x_low, x_high = math.floor(x_low), math.ceil(x_high)
    if x_high - x_low < 1e-9:
        x_low, x_high = x_low - 1, x_high + 1
    y_low, y_high = _y_range([p.y for p in points])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + plot_w * (x - x_low) / (x_high - x_low)

    def sy(y: float) -> float:
        return TOP + plot_h * (1 - (100 * y - y_low) / (y_high - y_low))

    parts = _y_axis(y_low, y_high, y_label)
    ticks = (
        [float(t) for t in range(int(x_low), int(x_high) + 1)]
        if log_x
        else [x_low + i * (x_high - x_low) / 5 for i in range(6)]
    )
    for tick in ticks:
        text = _human(10**tick) if log_x else f"{tick:.3g}"
        parts.append(
            f'<text x="{_fmt(sx(tick))}" y="{HEIGHT - BOTTOM + 18}" '
            f'text-anchor="middle">{escape(text)}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    for point, x in zip(points, xs, strict=True):
        tip = f"{point.label}: {100 * point.y:.2f}% at {_human(point.x)}"
        circle = (
            f'<circle cx="{_fmt(sx(x))}" cy="{_fmt(sy(point.y))}" r="4">'
            f"<title>{escape(tip)}</title></circle>"
        )
        if point.href:
            circle = f'<a href="{escape(point.href)}">{circle}</a>'
        parts.append(circle)
    return _svg(parts, title)


def grouped_bars(groups: Sequence[str], series: Sequence[Series], title: str) -> Markup | None:
    """One group of bars per task, one bar per model, with 95% intervals where known."""
    if not groups or not series:
        return None
    y_low, y_high = 0.0, 100.0
    bottom = BOTTOM + 30  # room for slanted task names
    legend = 20 * math.ceil(len(series) / 3)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - bottom - legend
    top = HEIGHT - bottom - plot_h
    group_w = plot_w / len(groups)
    bar_w = group_w * 0.8 / len(series)

    def sy(value: float) -> float:
        return top + plot_h * (1 - (100 * value - y_low) / (y_high - y_low))

    parts = []
    for tick in range(0, 101, 20):
        y = top + plot_h * (1 - tick / 100)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_fmt(y)}" y2="{_fmt(y)}" class="grid"/>'
            f'<text x="{LEFT - 6}" y="{_fmt(y + 4)}" text-anchor="end">{tick}</text>'
        )
    for index, one in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        lx = LEFT + (index % 3) * (plot_w / 3)
        ly = 4 + 20 * (index // 3)
        parts.append(
            f'<rect x="{_fmt(lx)}" y="{ly}" width="12" height="12" fill="{color}"/>'
            f'<text x="{_fmt(lx + 16)}" y="{ly + 11}">{escape(one.name[:40])}</text>'
        )
        for g, value in enumerate(one.values):
            if value is None:
                continue
            x = LEFT + g * group_w + group_w * 0.1 + index * bar_w
            y = sy(value)
            tip = f"{one.name}, {groups[g]}: {100 * value:.2f}%"
            parts.append(
                f'<rect x="{_fmt(x)}" y="{_fmt(y)}" width="{_fmt(bar_w)}" '
                f'height="{_fmt(top + plot_h - y)}" fill="{color}">'
                f"<title>{escape(tip)}</title></rect>"
            )
            found = one.intervals[g] if g < len(one.intervals) else None
            if found is not None:
                middle = x + bar_w / 2
                parts.append(
                    f'<line class="ci" x1="{_fmt(middle)}" x2="{_fmt(middle)}" '
                    f'y1="{_fmt(sy(found[0]))}" y2="{_fmt(sy(found[1]))}"/>'
                )
    for g, group in enumerate(groups):
        x, y = LEFT + g * group_w + group_w / 2, top + plot_h + 14
        parts.append(
            f'<text x="{_fmt(x)}" y="{_fmt(y)}" text-anchor="end" class="small" '
            f'transform="rotate(-25 {_fmt(x)} {_fmt(y)})">{escape(group[:22])}</text>'
        )
    parts.append(
        f'<text x="14" y="{_fmt(top + plot_h / 2)}" text-anchor="middle" '
        f'transform="rotate(-90 14 {_fmt(top + plot_h / 2)})">accuracy (%)</text>'
    )
    return _svg(parts, title)
