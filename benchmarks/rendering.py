"""One step of the 24-layer transformer drawn: graphscope's default render against torchviz + dot."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import graphscope
from graphscope.errors import GraphscopeError
from graphscope.renderers.dot import to_dot
from graphscope.renderers.engine import layout
from graphscope.analysis.view import readable

from benchmarks import report
from benchmarks.graphs import transformer
from benchmarks.measure import OverLimit, Timings, dot_node_count, interleaved, ratio, torchviz_source

REPEATS = 3


def system_dot(source: str, limit: float) -> bytes:
    """SVG from the system Graphviz `dot` (/usr/bin/dot on PATH), stopped at `limit` seconds."""
    try:
        done = subprocess.run(["dot", "-Tsvg"], input=source.encode("utf-8"), capture_output=True,
                              timeout=limit, check=True)
    except subprocess.TimeoutExpired:
        raise OverLimit(f"> {limit:g} s") from None
    return done.stdout


def embedded(source: str, limit: float) -> bytes:
    """SVG from graphscope's default engine (WebAssembly Graphviz), stopped at `limit` seconds."""
    try:
        return layout(source, "svg", "embedded", limit)
    except GraphscopeError as exc:
        if "longer than" in str(exc):
            raise OverLimit(f"> {limit:g} s") from None
        raise


@dataclass(frozen=True)
class RenderResult:
    """Node counts and timings of each drawing of the same step."""

    layers: int
    view_nodes: int
    graphscope_nodes: int
    torchviz_nodes: int
    text: Timings
    layouts: Timings


def measure(layers: int, limit: float) -> RenderResult:
    """Capture one training step, then time DOT text and layout for each tool, taking turns."""
    with graphscope.record() as session:  # as `graphscope render` does: ops learn their module call
        transformer(layers).backward()
    snapshot = session[0]
    output = transformer(layers)  # a fresh identical graph for torchviz, which draws before backward
    view = readable(snapshot)
    ours, theirs, shown = to_dot(snapshot), torchviz_source(output), to_dot(view)
    text = interleaved({
        "graphscope view": lambda _: to_dot(readable(snapshot)),
        "graphscope": lambda _: to_dot(snapshot),
        "torchviz": lambda _: torchviz_source(output),
    }, lambda: None, REPEATS)
    layouts = interleaved({
        "embedded view": lambda _: embedded(shown, limit),
        "embedded": lambda _: embedded(ours, limit),
        "graphscope dot": lambda _: system_dot(ours, limit),
        "torchviz dot": lambda _: system_dot(theirs, limit),
    }, lambda: None, REPEATS, budget=limit)
    return RenderResult(layers, len(view.nodes), len(snapshot.nodes), dot_node_count(theirs), text, layouts)


def _total(text: Timings, layouts: Timings, tool: str, engine: str) -> float | str:
    """DOT text plus layout, or the reason the layout has no time."""
    if isinstance(layouts[engine], str):
        return layouts[engine]
    return text[tool] + layouts[engine]


def markdown(result: RenderResult, limit: float) -> str:
    """The render table: DOT text, layout and total per drawing, against torchviz + dot."""
    rows = [
        ("graphscope default (readable view: module calls collapsed) + embedded Graphviz", "graphscope view",
         "embedded view", result.view_nodes),
        ("graphscope `--full` + embedded Graphviz", "graphscope", "embedded", result.graphscope_nodes),
        ("graphscope `--full` + system `dot`", "graphscope", "graphscope dot", result.graphscope_nodes),
        ("torchviz `make_dot` + system `dot`", "torchviz", "torchviz dot", result.torchviz_nodes),
    ]
    reference = _total(result.text, result.layouts, "torchviz", "torchviz dot")
    body = [
        [label, report.count(nodes), report.seconds(result.text[tool]), report.seconds(result.layouts[engine]),
         report.seconds(_total(result.text, result.layouts, tool, engine)),
         report.times(ratio(_total(result.text, result.layouts, tool, engine), reference))]
        for label, tool, engine, nodes in rows
    ]
    return "\n\n".join([
        f"## Drawing one step of the {result.layers}-layer transformer",
        f"One training step recorded with `graphscope.record()` as `graphscope render` records it "
        f"(gradients, source lines and module calls included), drawn "
        f"as SVG; torchviz draws a fresh identical graph. Medians of up to {REPEATS} turns each, "
        f"every layout stopped at {limit:g} s. The absolute times are for scale only: compare "
        f"within the table.",
        report.table(("drawing", "nodes", "DOT text", "layout", "total", "÷ torchviz + dot"), body),
    ])
