"""A run's growth as text (the table `render` prints) and as a small SVG line chart."""

from __future__ import annotations

from typing import Sequence
from xml.sax.saxutils import escape

from graphscope.analysis.growth import GrowthRow
from graphscope.numbers import size_text

WIDTH, HEIGHT, MARGIN = 640, 260, 48
TICKS = 6


def growth_table(rows: Sequence[GrowthRow], limit: int = 12) -> str:
    """Aligned text: step, nodes, edges, carried over, leaves, and the bytes the carried nodes
    hold when any do; long runs show both ends."""
    shown = list(rows) if len(rows) <= limit else [*rows[: limit - 2], None, rows[-1]]
    held = any(row.held for row in rows)
    lines = ["   step    nodes    edges  carried   leaves" + ("        held" if held else "")]
    for row in shown:
        if row is None:
            lines.append(f"    ... {len(rows) - limit + 1} more")
            continue
        line = f"{row.step:>7} {row.nodes:>8} {row.edges:>8} {row.carried:>8} {row.leaves:>8}"
        lines.append(line + (f" {_held_text(row.held):>11}" if held else ""))
    return "\n".join(lines)


def _held_text(held: int | None) -> str:
    """Bytes held, or `not counted` where a step's carried functions were not all counted."""
    return "not counted" if held is None else size_text(held)


def _points(rows: Sequence[GrowthRow], values: Sequence[int | None], top: int) -> list[str]:
    """Polyline points for one series, steps on x and counts on y: one line per run of steps
    whose value is known (no line is drawn across a step whose value was not counted)."""
    span = max(len(rows) - 1, 1)
    inner_w, inner_h = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN
    lines: list[list[str]] = [[]]
    for i, v in enumerate(values):
        if v is None:
            lines.append([])
        else:
            lines[-1].append(f"{MARGIN + inner_w * i / span:.1f},{HEIGHT - MARGIN - inner_h * v / top:.1f}")
    return [" ".join(line) for line in lines if line]


def _step_ticks(rows: Sequence[GrowthRow]) -> list[str]:
    """SVG for up to TICKS step numbers along the x axis, evenly spread, the first and last included."""
    if not rows:
        return []
    span = max(len(rows) - 1, 1)
    positions = sorted({round(k * (len(rows) - 1) / (TICKS - 1)) for k in range(TICKS)})
    parts = []
    for i in positions:
        x = MARGIN + (WIDTH - 2 * MARGIN) * i / span
        parts.append(f'<line x1="{x:.1f}" y1="{HEIGHT - MARGIN}" x2="{x:.1f}" y2="{HEIGHT - MARGIN + 4}" stroke="#9e9e9e"/>')
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - MARGIN + 16}" text-anchor="middle">{rows[i].step}</text>')
    parts.append(f'<text x="{WIDTH / 2:.0f}" y="{HEIGHT - MARGIN + 32}" text-anchor="middle">step</text>')
    return parts


def growth_svg(rows: Sequence[GrowthRow], title: str = "graph size per step") -> str:
    """A self-contained SVG line chart of nodes and carried-over nodes per step, and, when the
    carried nodes hold saved tensors, those bytes on a scale of their own (its top on the right)."""
    top = max([r.nodes for r in rows] + [1])
    series = (("nodes", "#1565c0", [r.nodes for r in rows]), ("carried over", "#d84315", [r.carried for r in rows]))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica,Arial,sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{MARGIN}" y="20" font-size="13">{escape(title)}</text>',
        f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - MARGIN}" y2="{HEIGHT - MARGIN}" stroke="#9e9e9e"/>',
        f'<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{HEIGHT - MARGIN}" stroke="#9e9e9e"/>',
        f'<text x="{MARGIN - 6}" y="{MARGIN + 4}" text-anchor="end">{top}</text>',
        f'<text x="{MARGIN - 6}" y="{HEIGHT - MARGIN + 4}" text-anchor="end">0</text>',
        *_step_ticks(rows),
    ]
    held = max((r.held for r in rows if r.held is not None), default=0)
    if held:
        series += (("bytes held by carried nodes", "#6a1b9a", [r.held for r in rows]),)
        parts.append(f'<text x="{WIDTH - MARGIN + 6}" y="{MARGIN + 4}" fill="#6a1b9a">{size_text(held)}</text>')
    for k, (label, color, values) in enumerate(series):
        if rows:
            scale = held if label.startswith("bytes") else top
            parts.extend(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>'
                         for points in _points(rows, values, scale))
        x = WIDTH - MARGIN - 150
        parts.append(f'<line x1="{x}" y1="{20 + 14 * k - 4}" x2="{x + 18}" y2="{20 + 14 * k - 4}" stroke="{color}" stroke-width="2"/>')
        parts.append(f'<text x="{x + 24}" y="{20 + 14 * k}">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
