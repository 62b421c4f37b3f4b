"""SnapshotDiff -> DOT: the union of both graphs, with what was added, removed and carried over coloured."""

from __future__ import annotations

from graphscope.analysis.diff import SnapshotDiff
from graphscope.renderers.dot import FONT, attributes, node_label, node_tooltip, quote

ADDED = {"color": "#2e7d32", "fillcolor": "#c8e6c9", "penwidth": "2.5", "style": "filled,bold"}
REMOVED = {"color": "#c62828", "fillcolor": "#ffebee", "fontcolor": "#c62828", "style": "filled,dashed"}
CARRIED = {"color": "#d84315", "fillcolor": "#ffccbc", "style": "filled"}
SAME = {"color": "#9e9e9e", "fillcolor": "#fafafa", "style": "filled"}
LEGEND = (("added in the new step", ADDED), ("removed since the old step", REMOVED),
          ("carried over from an earlier step", CARRIED), ("in both", SAME))
REMOVED_PREFIX = "removed:"


def _node_line(node_id: str, label: str, tooltip: str, style: dict[str, str]) -> str:
    """One DOT node statement."""
    attrs = {"shape": "box", **style, "id": node_id, "label": label, "tooltip": tooltip}
    return f"  {quote(node_id)} {attributes(attrs)};"


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


def _legend(change: SnapshotDiff) -> list[str]:
    """DOT lines of the legend: only what the picture uses."""
    used = {"added in the new step": bool(change.added), "removed since the old step": bool(change.removed),
            "carried over from an earlier step": bool(change.carried), "in both": bool(change.common)}
    entries = [(text, style) for text, style in LEGEND if used[text]]
    lines = ["  subgraph cluster_legend {",
             "    graph " + attributes({"color": "#bdbdbd", "label": "legend", "labeljust": "l"}) + ";"]
    names = []
    for i, (text, style) in enumerate(entries):
        names.append(quote(f"legend_{i}"))
        lines.append("  " + _node_line(f"legend_{i}", text, text, style))
    if len(names) > 1:
        lines.append("    " + " -> ".join(names) + ' [style="invis"];')
    return lines + ["  }"]


def diff_to_dot(change: SnapshotDiff) -> str:
    """DOT text of the union graph, deterministic for the same pair of snapshots: every node of
    the new graph and the removed ones of the old, and only edges one of the two graphs has."""
    old, new = change.old, change.new
    added, carried = set(change.added) | {m.new for m in change.moved}, set(change.carried)
    title = f"diff: step {old.step} -> step {new.step} · +{len(change.added)} -{len(change.removed)}"
    lines = ["digraph graphscope_diff {",
             "  graph " + attributes({"fontname": FONT, "fontsize": "12", "label": title, "labeljust": "l",
                                      "labelloc": "t", "rankdir": "TB"}) + ";",
             "  node " + attributes({"fontname": FONT, "fontsize": "10", "height": "0.3"}) + ";",
             "  edge " + attributes({"fontname": FONT, "fontsize": "9", "arrowsize": "0.7"}) + ";"]
    for node in new.nodes:
        style = ADDED if node.id in added else CARRIED if node.id in carried else SAME
        lines.append(_node_line(node.id, node_label(node, new.step, new.call), node_tooltip(node), style))
    for node_id in change.removed:
        node = old[node_id]
        lines.append(_node_line(REMOVED_PREFIX + node_id, node_label(node, old.step, old.call), node_tooltip(node), REMOVED))
    new_edges = set(change.edges_added)
    for edge in new.edges:
        pair = (edge.source, edge.target)
        style = {"color": ADDED["color"], "penwidth": "2"} if pair in new_edges else {"color": "#757575"}
        lines.append(f"  {quote(edge.source)} -> {quote(edge.target)} {attributes(style)};")
    for source, target in change.edges_removed:
        ends = _removed_edge_ends(change, source, target)
        if ends is not None:
            lines.append(f"  {quote(ends[0])} -> {quote(ends[1])} "
                         f"{attributes({'color': REMOVED['color'], 'style': 'dashed'})};")
    return "\n".join(lines + _legend(change) + ["}"]) + "\n"
