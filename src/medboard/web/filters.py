"""Jinja2 filters: how numbers read on the pages (scores are fractions, shown in percent)."""

from collections.abc import Sequence
from typing import Any


def pct(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}"


def interval_text(bounds: Sequence[float] | None) -> str:
    if not bounds:
        return ""
    return f"{100 * bounds[0]:.1f}–{100 * bounds[1]:.1f}"


def human_params(value: int | None) -> str:
    if value is None:
        return "—"
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if value >= size:
            return f"{value / size:.1f}{suffix}"
    return str(value)


def dash(value: Any) -> Any:
    return "—" if value is None or value == "" else value


def prob(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"
