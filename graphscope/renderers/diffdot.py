"""SnapshotDiff -> DOT: the union of both graphs, with what was added, removed and carried over coloured.

The union is made drawable before any layout starts, as a step's picture is: a node whose
edges would cross many ranks is drawn again beside each far neighbour, and a union that
still cannot be laid out in seconds is refused at once rather than after the time limit.
"""

from __future__ import annotations

from graphscope.analysis.diff import SnapshotDiff
from graphscope.analysis.spans import layout_cost, split_long_edges
from graphscope.errors import LayoutError
from graphscope.model import Edge, Snapshot
from graphscope.renderers.dot import FONT, node_label, node_tooltip
from graphscope.renderers.dottext import attributes, quote
from graphscope.renderers.legend import Row, legend

ADDED = {"color": "#2e7d32", "fillcolor": "#c8e6c9", "penwidth": "2.5", "style": "filled,bold"}
REMOVED = {"color": "#c62828", "fillcolor": "#ffebee", "fontcolor": "#c62828", "style": "filled,dashed"}
CARRIED = {"color": "#d84315", "fillcolor": "#ffccbc", "style": "filled"}
SAME = {"color": "#9e9e9e", "fillcolor": "#fafafa", "style": "filled"}
LEGEND = (("added in the new step", ADDED), ("removed since the old step", REMOVED),
          ("carried over from an earlier step", CARRIED), ("in both", SAME))
REMOVED_PREFIX = "removed:"
NEW_EDGE = {"color": ADDED["color"], "penwidth": "2"}
OLD_EDGE = {"color": REMOVED["color"], "style": "dashed"}


def _removed_edge_ends(change: SnapshotDiff, source: str, target: str) -> list[str] | None:
    """Where a removed edge is drawn: a matched end at its node in the new graph, a removed one
    at its removed box; None when an end is drawn nowhere."""
    removed = set(change.removed)
    ends = []
    for node_id in (source, target):
        if node_id in change.matched:
            ends.append(change.matched[node_id])
        elif node_id in removed:
            ends.append(REMOVED_PREFIX + node_id)
        else:
            return None
    return ends


def _styles(change: SnapshotDiff) -> dict[str, dict[str, str]]:
    """Node id in the union -> its style: added, carried over, in both, or removed."""
    added, carried = set(change.added) | {m.new for m in change.moved}, set(change.carried)
    styles = {node.id: ADDED if node.id in added else CARRIED if node.id in carried else SAME
              for node in change.new.nodes}
    styles.update({REMOVED_PREFIX + node_id: REMOVED for node_id in change.removed})
    return styles


def union(change: SnapshotDiff) -> Snapshot:
    """Every node of the new graph and the removed ones of the old, with only the edges one of
    the two graphs has; a removed edge's gradient is left out (its style says what it is)."""
    old, new = change.old, change.new
    nodes = [*new.nodes, *(old[i]._replace(id=REMOVED_PREFIX + i) for i in change.removed)]
    edges = [Edge(e.source, e.target) for e in new.edges]
    for source, target in change.edges_removed:
        ends = _removed_edge_ends(change, source, target)
        if ends is not None:
            edges.append(Edge(ends[0], ends[1]))
    return Snapshot(tuple(nodes), tuple(edges), new.step, new.call)


def drawable_union(change: SnapshotDiff) -> Snapshot:
    """The union with its long edges split, as a step's picture is; LayoutError when it is
    still too big to lay out in seconds."""
    graph = union(change)
    for drawn in (split_long_edges(graph), split_long_edges(graph, leaves_only=False)):
        if layout_cost(drawn, labels=False).fits():
            return drawn
    raise LayoutError(f"the union of both steps is too big to lay out in time ({layout_cost(graph, labels=False)}); "
                      "write it as .dot, or compare two smaller steps")


def _original(node_id: str, styles: dict[str, dict[str, str]]) -> str:
    """The union node a node of the drawn graph is, or is a copy of (`leaf_0~3`)."""
    return node_id if node_id in styles else node_id.rsplit("~", 1)[0]


def _legend_rows(change: SnapshotDiff) -> list[Row]:
    """The legend's lines: only what the picture uses."""
    used = {"added in the new step": bool(change.added), "removed since the old step": bool(change.removed),
            "carried over from an earlier step": bool(change.carried), "in both": bool(change.common)}
    return [Row(text, {"shape": "box", **style}) for text, style in LEGEND if used[text]]


def diff_to_dot(change: SnapshotDiff, drawn: Snapshot | None = None) -> str:
    """DOT text of the union graph (`drawn`: the union as it is drawn, long edges split;
    the whole union when not given), deterministic for the same pair of snapshots."""
    old, new = change.old, change.new
    drawn = union(change) if drawn is None else drawn
    styles, added_edges = _styles(change), set(change.edges_added)
    title = f"diff: step {old.step} -> step {new.step} · +{len(change.added)} -{len(change.removed)}"
    lines = ["digraph graphscope_diff {",
             "  graph " + attributes({"fontname": FONT, "fontsize": "12", "label": title, "labeljust": "l",
                                      "labelloc": "t", "rankdir": "TB"}) + ";",
             "  node " + attributes({"fontname": FONT, "fontsize": "10", "height": "0.3"}) + ";",
             "  edge " + attributes({"fontname": FONT, "fontsize": "9", "arrowsize": "0.7"}) + ";"]
    for node in drawn.nodes:
        original = _original(node.id, styles)
        step, call = (old.step, old.call) if original.startswith(REMOVED_PREFIX) else (new.step, new.call)
        attrs = {"shape": "box", **styles[original], "id": node.id, "label": node_label(node, step, call),
                 "tooltip": node_tooltip(node)}
        lines.append(f"  {quote(node.id)} {attributes(attrs)};")
    for index, edge in enumerate(drawn.edges):  # in the union's order: the new graph's, then removed ones
        pair = (_original(edge.source, styles), _original(edge.target, styles))
        style = (OLD_EDGE if index >= len(new.edges) else NEW_EDGE if pair in added_edges
                 else {"color": "#757575"})
        lines.append(f"  {quote(edge.source)} -> {quote(edge.target)} {attributes(style)};")
    return "\n".join(lines + legend(_legend_rows(change)) + ["}"]) + "\n"
