"""What the report's explorer needs to draw a step again in the browser, with any module box
opened or closed: every node and box of the step with the DOT attributes the pictures give
it, the boxes around each node at every depth, and the edges.

The browser lays the view out with the same Graphviz build the pictures come from, so an
opened box looks as a picture drawn at that depth would. A step carries this only when its
picture hides something (a box, a folded chain) or was not drawn: a step drawn whole needs
nothing more than its picture.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from graphscope.analysis.boxes import View
from graphscope.analysis.spans import LAYOUT_UNITS, MAX_RANKS, SEGMENT_WEIGHT, SPAN
from graphscope.analysis.view import MIN_CHAIN, collapse_modules, module_depth
from graphscope.model import Edge, Finding, Node, NodeKind, Snapshot
from graphscope.renderers.dot import (CLUSTER, DEFAULTS, GRAPH, PEN_MAX, PEN_MIN, edge_attributes, looks,
                                      node_attributes, step_findings, title)
from graphscope.renderers import labels
from graphscope.renderers.styles import BORDER_TEXT, FILL_TEXT, border_style, fill_style, look

EXPLORER_NODES = 20_000

Boxes = dict[str, tuple[Node, View]]


def hides_something(view: Snapshot) -> bool:
    """True when a picture stands for more than it draws: a module box or a folded chain."""
    return any(n.kind is NodeKind.MODULE or n.folded for n in view.nodes)


def box_levels(snapshot: Snapshot, view: Snapshot) -> tuple[dict[str, list[str]], Boxes]:
    """The boxes around each node at every depth, outermost first, and each box's node and the
    view it was made in; a run of identical calls the picture folded is one more box around
    its calls. A module call of one op is no box, as in the pictures."""
    deepest = max((module_depth(n.module) for n in snapshot.nodes), default=0)
    chains: dict[str, list[str]] = {node.id: [] for node in snapshot.nodes}
    boxes: Boxes = {}
    for depth in range(1, deepest + 1):
        level = collapse_modules(snapshot, depth)
        for box_id, box in level.boxes.items():
            boxes[box_id] = (level[box_id], level)
            for member in box.members:
                chains[member.id].append(box_id)
    for box_id, box in (view.boxes.items() if isinstance(view, View) else ()):
        if box.calls:
            boxes[box_id] = (view[box_id], view)
            for member in box.members:
                chain = chains[member.id]
                chain.insert(next((k for k, b in enumerate(chain) if b in box.calls), len(chain)), box_id)
    return chains, boxes


def _untitled(attrs: dict[str, str]) -> dict[str, str]:
    """A node's attributes without its tooltip: the details beside the graph say all of it."""
    return {key: value for key, value in attrs.items() if key != "tooltip"}


def _box_record(node: Node, level: View) -> dict[str, Any]:
    """One box as the explorer draws it closed: DOT attributes, the cluster it sits in, its path."""
    shown = look(node, level.step, level.call)
    attrs = _untitled(node_attributes(node, level, shown, []))
    return {"a": attrs, "m": node.module, "p": node.name, "n": 0, "l": [str(shown.fill), shown.border]}


def _boxes(chains: dict[str, list[str]], boxes: Boxes) -> dict[str, dict[str, Any]]:
    """Each box: how it is drawn closed, how many nodes it holds, the boxes directly inside it."""
    records = {box_id: _box_record(node, level) for box_id, (node, level) in boxes.items()}
    inside: dict[str, dict[str, None]] = {box_id: {} for box_id in records}
    for chain in chains.values():
        for outer, inner in zip(chain, chain[1:]):
            inside[outer][inner] = None
        for box_id in chain:
            records[box_id]["n"] += 1
    for box_id, kids in inside.items():
        records[box_id]["k"] = list(kids)
    return records


def _nodes(snapshot: Snapshot, chains: dict[str, list[str]], findings: Sequence[Finding]) -> list[dict[str, Any]]:
    """Each node of the step as drawn on its own: DOT attributes, its cluster, its boxes, its legend keys."""
    shown = looks(snapshot, step_findings(snapshot, findings))
    records = []
    for node in snapshot.nodes:
        appearance, concerning = shown[node.id]
        record = {"i": node.id, "k": node.kind.value, "o": node.op, "t": node.title,
                  "a": _untitled(node_attributes(node, snapshot, appearance, concerning)),
                  "l": [str(appearance.fill), appearance.border]}
        if node.kind is NodeKind.FUNCTION and node.module:
            record["m"] = node.module
        if chains[node.id]:
            record["c"] = chains[node.id]
        records.append(record)
    return records


def _edges(snapshot: Snapshot) -> list[list[Any]]:
    """Each edge: its ends, its DOT attributes, and the gradient norm its width comes from
    (None when its width does not depend on the others')."""
    records = []
    for edge in snapshot.edges:
        attrs = edge_attributes(edge, snapshot, None)
        norm = edge.grad.norm if edge.grad is not None else None
        scaled = norm is not None and math.isfinite(norm) and norm > 0 and not labels.nonfinite(edge.grad)
        if scaled:
            del attrs["penwidth"]
        saved = snapshot[edge.source].kind is NodeKind.SAVED
        records.append([edge.source, edge.target, attrs, norm if scaled else None, int(saved)])
    return records


def _legend() -> dict[str, Any]:
    """The legend lines a view can need: every fill and border, with the attributes they are drawn with."""
    fills = {str(key): [text, fill_style(key)] for key, text in FILL_TEXT.items()}
    borders = {key: [text, {"fillcolor": "#ffffff", **border_style(key)}] for key, text in BORDER_TEXT.items()}
    return {"fills": fills, "borders": borders}


def _plain() -> list[dict[str, str]]:
    """The attributes of an edge that merges several (no gradient): from a tensor, and from a saved one."""
    pair = Snapshot((Node("saved", NodeKind.SAVED), Node("other", NodeKind.FUNCTION)), ())
    return [edge_attributes(Edge("other", "saved"), pair, None), edge_attributes(Edge("saved", "other"), pair, None)]


def drawing_rules() -> dict[str, Any]:
    """What every step's explorer shares: how pictures are drawn and the limits of a quick layout."""
    return {
        "graph": GRAPH,
        "defaults": list(DEFAULTS),
        "cluster": CLUSTER,
        "plain": _plain(),
        "legend": _legend(),
        "limits": {"units": LAYOUT_UNITS, "weight": SEGMENT_WEIGHT, "ranks": MAX_RANKS, "span": SPAN,
                   "chain": MIN_CHAIN, "pen": [PEN_MIN, PEN_MAX]},
    }


def graph_data(snapshot: Snapshot, view: Snapshot, findings: Sequence[Finding],
               levels: tuple[dict[str, list[str]], Boxes]) -> dict[str, Any]:
    """Everything the explorer needs to draw this step with any box open, starting from `view`
    (`levels`: what `box_levels` says of the step); the rules it shares with every step are
    `drawing_rules()`."""
    chains, boxes = levels
    return {
        "title": title(snapshot),
        "nodes": _nodes(snapshot, chains, findings),
        "edges": _edges(snapshot),
        "boxes": _boxes(chains, boxes),
        "closed": [n.id for n in view.nodes if n.id in boxes],
        "chains": any(n.folded and n.kind is NodeKind.FUNCTION for n in view.nodes),
    }
