"""Markdown for results.md: tables and the way numbers are written in them."""

from __future__ import annotations

from typing import Sequence

from benchmarks.measure import Outcome


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: int = 1) -> str:
    """A markdown table; columns from number `right` on are right-aligned."""
    align = ["---" if i < right else "---:" for i in range(len(header))]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def seconds(value: Outcome) -> str:
    """A duration in µs, ms or s with three significant digits; a reason stays as it is."""
    if isinstance(value, str):
        return value
    if value >= 100:
        return f"{value:.0f} s"
    if value >= 1:
        return f"{value:.3g} s"
    if value >= 1e-3:
        return f"{value * 1e3:.3g} ms"
    return f"{value * 1e6:.3g} µs"


def times(value: Outcome) -> str:
    """A ratio written as x1.23 (x12.3, x123 for larger ones); a reason stays as it is."""
    if isinstance(value, str):
        return value
    return f"x{value:.3g}" if value < 1000 else f"x{value:,.0f}"


def count(value: int | None) -> str:
    """An integer with thousands separators; None as a dash."""
    return "-" if value is None else f"{value:,}"
