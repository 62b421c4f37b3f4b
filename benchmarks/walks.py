"""Walking and building each graph: graphscope against the minimal walker and torchviz."""

from __future__ import annotations

from dataclasses import dataclass

import graphscope
from graphscope.renderers.dot import to_dot

from benchmarks import report
from benchmarks.graphs import GraphSpec
from benchmarks.measure import Timings, dot_node_count, interleaved, minimal_walk, ratio, timed, torchviz_source

SAMPLE_SECONDS = 2e-3  # small graphs are timed in batches of calls lasting about this long
BUDGET_SECONDS = 20.0  # per graph and mode: deep graphs get fewer rounds (at least one)
BAR = 1.5  # the target for trace ÷ walker on the deep chain and the large transformer

TOOLS = {
    "walker": minimal_walk,
    "trace": graphscope.trace,
    "trace+records": lambda output: graphscope.trace(output).edges,
    "trace+dot": lambda output: to_dot(graphscope.trace(output)),
    "torchviz": torchviz_source,
}
FRESH_TOOLS = {"walker": minimal_walk, "trace": graphscope.trace}


@dataclass(frozen=True)
class WalkRow:
    """One graph's node counts and the tools' timings, warm and on fresh graphs."""

    label: str
    autograd_nodes: int
    graphscope_nodes: int
    torchviz_nodes: int | None
    warm: Timings
    fresh: Timings


def repeats_for(seconds: float, quick: bool) -> int:
    """More samples for fast calls, fewer for slow ones."""
    if quick:
        return 3
    return 21 if seconds < 1e-3 else 11 if seconds < 0.1 else 3


def measure(spec: GraphSpec, quick: bool) -> WalkRow:
    """Count the nodes each tool sees, then time every tool warm and on fresh graphs."""
    output = spec.build()
    nodes, _ = minimal_walk(output)  # also creates the Python wrappers of the autograd nodes
    try:
        torchviz_nodes: int | None = dot_node_count(torchviz_source(output))
    except RecursionError:
        torchviz_nodes = None
    graphscope_nodes = len(graphscope.trace(output).nodes)
    walk_seconds = timed(minimal_walk, output)
    repeats = repeats_for(walk_seconds, quick)
    number = max(1, int(SAMPLE_SECONDS / walk_seconds))
    warm = interleaved(TOOLS, lambda: output, repeats, number, BUDGET_SECONDS)
    fresh = interleaved(FRESH_TOOLS, spec.build, repeats, budget=BUDGET_SECONDS)
    return WalkRow(spec.label, len(nodes), graphscope_nodes, torchviz_nodes, warm, fresh)


HEADER = (
    "graph", "autograd nodes", "graphscope nodes", "torchviz nodes", "walker (scale)",
    "trace ÷ walker", "trace + records ÷ walker", "trace + DOT ÷ walker", "torchviz ÷ walker",
    "fresh graph: trace ÷ walker",
    "rounds",
)


def bar(rows: list[WalkRow]) -> str:
    """The target line: warm trace ÷ walker on the largest chain and the largest transformer."""
    largest = [kind[-1] for kind in ([row for row in rows if row.label.startswith(prefix)]
                                     for prefix in ("chain", "Transformer")) if kind]
    results = [f"{row.label} **{report.times(ratio(row.warm['trace'], row.warm['walker']))}** "
               f"({report.times(ratio(row.warm['trace+records'], row.warm['walker']))} with every record read)"
               for row in largest]
    return f"Target: trace ÷ walker at most x{BAR:g} on these two: " + "; ".join(results) + "."


def markdown(rows: list[WalkRow]) -> str:
    """The walk table with a note on how it was measured."""
    body = [
        [
            row.label, report.count(row.autograd_nodes), report.count(row.graphscope_nodes),
            report.count(row.torchviz_nodes), report.seconds(row.warm["walker"]),
            report.times(ratio(row.warm["trace"], row.warm["walker"])),
            report.times(ratio(row.warm["trace+records"], row.warm["walker"])),
            report.times(ratio(row.warm["trace+dot"], row.warm["walker"])),
            report.times(ratio(row.warm["torchviz"], row.warm["walker"])),
            report.times(ratio(row.fresh["trace"], row.fresh["walker"])),
            f"{row.warm.rounds} / {row.fresh.rounds}",
        ]
        for row in rows
    ]
    return "\n\n".join([
        "## Walking the graph (no layout)",
        "The minimal walker is an explicit-stack DFS over `grad_fn.next_functions` that only "
        "collects nodes and edges. `trace` is `graphscope.trace(output)` (names from the "
        "caller's frames, as users call it): it reads from the graph everything the snapshot "
        "holds and builds the node and edge records from that when they are first read; "
        "`trace + records` reads them all at once; `trace + DOT` adds `to_dot`; torchviz is "
        "`make_dot(output).source`. **Warm** (all columns but the last): each graph is built "
        "once and walked once by the minimal walker before any timing, so the Python wrappers of "
        "its autograd nodes already exist; the tools then take turns on that same graph, and "
        "each ratio is a median over the turns divided by the walker's median. **Fresh** (last "
        "column): a new identical graph is built before every single measurement, so each tool "
        "also pays for creating the wrappers. Rounds: turns per tool (warm / fresh); no round "
        f"starts after {BUDGET_SECONDS:g} s on one graph. Nodes: the walker counts autograd "
        "functions (AccumulateGrad included); graphscope draws each leaf in place of its "
        "AccumulateGrad and adds the output; torchviz adds a box per leaf tensor and per output.",
        report.table(HEADER, body),
        bar(rows),
    ])
