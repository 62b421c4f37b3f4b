"""The legend of a picture: one sample per fill and per border the picture's nodes really
have, each drawn with the very attributes of those nodes, in a column beside the graph.

The legend is a graph component of its own, the last one, so Graphviz draws it at the top
right. Its lines take one rank of the graph each: packing the components apart (Graphviz
`pack`) would keep them closer, but dot then drops every edge label, the gradients the
picture is there to show. What is text only (notes, findings about no drawn node) goes
under the title.
"""

from __future__ import annotations

import textwrap
from typing import Iterable, NamedTuple, Sequence

from graphscope.model import Edge, Finding, Snapshot
from graphscope.numbers import number
from graphscope.renderers import labels
from graphscope.renderers.dottext import attributes, quote
from graphscope.renderers.styles import (BORDER_TEXT, FILL_TEXT, NONFINITE_COLOR, Look, border_style,
                                         fill_style)

WRAP = 72
ROW_WRAP = 48
PLAIN = {"shape": "plaintext", "style": "solid"}


class Row(NamedTuple):
    """One line of a legend: its text, drawn in a node with `style`."""

    text: str
    style: dict[str, str]


def _ordered(keys: Iterable, order: Iterable) -> list:
    """The keys that occur, in the legend's order."""
    present = set(keys)
    return [key for key in order if key in present]


def node_rows(looks: Sequence[Look], findings: Sequence[Finding]) -> list[Row]:
    """A line per fill and per border the nodes were drawn with; a finding's border names its rules."""
    rows = [Row(FILL_TEXT[key], fill_style(key)) for key in _ordered((lk.fill for lk in looks), FILL_TEXT)]
    for key in _ordered((lk.border for lk in looks), BORDER_TEXT):
        where = sorted({f.rule + (f" at {f.location}" if f.location else "") for f in findings if f.severity == key})
        text = BORDER_TEXT[key] + (f" ({'; '.join(where)})" if where else "")
        rows.append(Row(textwrap.fill(text, ROW_WRAP, break_on_hyphens=False),
                        {"shape": "box", "style": "filled", "fillcolor": "#ffffff", **border_style(key)}))
    return rows


def edge_rows(edges: Sequence[Edge], scale: tuple[float, float] | None, labelled: bool = True) -> list[Row]:
    """What edge labels (when the picture writes them) and widths mean, with the picture's
    range of gradient norms."""
    rows = []
    if scale is not None:
        low, high = (number(10 ** v) for v in scale)
        label = "edge label: the gradient that flowed back\n" if labelled else ""
        rows.append(Row(f"{label}edge width: log ‖grad‖, {low} thin … {high} thick", PLAIN))
    if any(labels.nonfinite(e.grad) for e in edges):
        rows.append(Row("red edge: a gradient with NaN/Inf", {**PLAIN, "fontcolor": NONFINITE_COLOR}))
    return rows


def text_lines(snapshot: Snapshot, unplaced: Sequence[Finding]) -> list[str]:
    """Lines under the title: the doctor's findings about this step that concern no drawn
    node, then the notes, each wrapped at WRAP characters."""
    texts = [f"⚠ {f.rule} ({f.severity})" + (f" at {f.location}" if f.location else "") for f in unplaced]
    texts += [f"note: {text}" for text in snapshot.notes]
    return [line for text in texts for line in textwrap.wrap(text, WRAP, subsequent_indent="  ", break_on_hyphens=False)]


def legend(rows: Sequence[Row]) -> list[str]:
    """DOT lines of the legend column: a heading, then one sample node per row, stacked top
    to bottom by invisible edges."""
    heading = {"fontcolor": "#757575", "fontsize": "10", "id": "legend_title", "label": "legend",
               "shape": "plaintext", "style": "solid"}
    lines = [f'  "legend_title" {attributes(heading)};']
    names = ['"legend_title"']
    for i, row in enumerate(rows):
        name = f"legend_{i}"
        names.append(quote(name))
        lines.append(f"  {quote(name)} {attributes({**row.style, 'id': name, 'label': row.text, 'tooltip': row.text})};")
    lines.append("  " + " -> ".join(names) + ' [style="invis"];')
    return lines
