"""Snapshot -> Graphviz DOT text: deterministic (walk order, sorted attributes), no layout.

Edges follow the forward data flow, inputs at the top and the output at the bottom.
Every user-provided string is escaped, so names cannot break the DOT or the SVG.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

from graphscope.analysis.boxes import Box, box_of
from graphscope.model import Edge, Finding, GradStat, Node, NodeKind, Snapshot, accumulated
from graphscope.model.snapshot import where_made
from graphscope.numbers import number
from graphscope.renderers import labels
from graphscope.renderers.dottext import LeftText, attributes, quote
from graphscope.renderers.legend import edge_rows, legend, node_rows, text_lines
from graphscope.renderers.styles import NONFINITE_COLOR, Look, look

FONT = "Helvetica"
PEN_MIN, PEN_MAX = 1.0, 5.0
MAX_PARAMETER_LINES = 6


def _parameter_line(name: str, leaves: list[Node], call: str) -> str:
    """`weight (64, 32) .grad ‖0.0213‖`; the range of norms for a parameter of each of several calls."""
    stats = [leaf.grad_step if call == "grad" else leaf.grad for leaf in leaves]
    text = f"{name} {labels.shape(leaves[0].shape)} " + ("grad() computed" if call == "grad" else ".grad")
    known = [stat for stat in stats if stat is not None]
    if not known:
        text = f"{name} {labels.shape(leaves[0].shape)} no .grad"
    elif len(stats) == 1:
        text += f" {labels.grad_value(known[0])}"
    else:
        norms = [stat.norm for stat in known]
        text += f" ‖{number(min(norms))}‖ … ‖{number(max(norms))}‖ in {len(known)} calls"
    if any(accumulated(leaf, call) for leaf in leaves):
        text += " (accumulated)"
    return text


def parameter_lines(box: Box, call: str = "backward") -> list[str]:
    """A line per parameter of a module box (one per name within the call, for a box of
    several calls), at most MAX_PARAMETER_LINES."""
    named: dict[str, list[Node]] = {}
    for leaf in box.leaves:
        named.setdefault(box.local_name(leaf), []).append(leaf)
    lines = [_parameter_line(name, leaves, call) for name, leaves in named.items()]
    if len(lines) > MAX_PARAMETER_LINES:
        more = len(lines) - MAX_PARAMETER_LINES + 1
        lines = lines[:MAX_PARAMETER_LINES - 1] + [f"… {more} more parameters"]
    return lines


def _module_lines(node: Node, box: Box | None, call: str) -> list[str]:
    """A module box: its path (× N for identical calls in a row), its ops, its parameters."""
    calls = len(box.paths) if box else 1
    ops = f"{node.folded} op" + ("" if node.folded == 1 else "s")
    if calls > 1:
        return [f"× {calls} {node.name}", f"{ops}, {node.folded // calls} per call", *parameter_lines(box, call)]
    return [node.name or node.id, ops, *(parameter_lines(box, call) if box else ())]


_CALLS = (NodeKind.FUNCTION, NodeKind.COMPILED)


def node_label(node: Node, step: int, call: str = "backward", box: Box | None = None) -> str:
    """The lines drawn inside a node (`box`: what a module box stands for)."""
    if node.kind is NodeKind.MODULE:
        lines = _module_lines(node, box, call)
    elif node.kind in _CALLS:
        title = node.name or node.op or node.id
        lines = labels.region_lines(node) if node.kind is NodeKind.COMPILED else [
            f"× {node.folded} {title}" if node.folded else title]
        if node.carried_over(step):
            lines.append(f"from step {node.first_step}")
    else:
        head = node.name or ("output" if node.kind is NodeKind.OUTPUT else node.op or node.id)
        lines = [head, labels.tensor_text(node)]
        if node.kind is NodeKind.SAVED:
            lines.append(labels.kind_text(node))
        lines += labels.grad_lines(node, call)
    if node.saved_freed:
        lines.append("saved tensors freed")
    if node.kind not in _CALLS and node.carried_over(step):
        lines.append(f"made in step {node.first_step}")
    return "\n".join(lines)


def node_tooltip(node: Node, box: Box | None = None, made: tuple[str | None, str | None] | None = None) -> str:
    """Everything known about a node, shown when hovering it in the SVG; `made` is its
    `file:line` and module as `where_made` shows them (else its own)."""
    source, module = made or (node.source, node.module)
    lines = [f"{node.title} ({node.id})"]
    if node.kind is NodeKind.MODULE and box and len(box.paths) > 1:
        lines.append(f"{len(box.paths)} identical calls in a row ({box.paths[0]} … {box.paths[-1]}), drawn as "
                     f"one box: {node.folded} ops inside")
    elif node.kind is NodeKind.MODULE:
        lines.append(f"one call of module {node.name}, drawn as one box: {node.folded} ops inside")
    elif node.kind is NodeKind.FUNCTION:
        lines.append(f"backward function {node.op}" + (f", {node.folded} in a row" if node.folded else ""))
        if module:
            lines.append(f"inside module {module}")
    elif node.kind is NodeKind.COMPILED:
        lines.append(f"{node.op}: " + " · ".join(labels.region_lines(node)))
    else:
        lines.append(f"{labels.kind_text(node)} {labels.tensor_text(node)}")
        lines.append(
            f"is_leaf={node.is_leaf} requires_grad={node.requires_grad} retains_grad={node.retains_grad}"
        )
        if node.kind is NodeKind.TENSOR and node.op:
            lines.append(f"produced by {node.op}")
    if source:
        lines.append(f"created at {source}")
    if node.first_step is not None:
        lines.append(f"first captured in step {node.first_step}")
    if node.grad is not None:
        lines.append(f".grad: {labels.grad_details(node.grad)}")
    if node.grad_step is not None:
        lines.append(f"this step: {labels.grad_details(node.grad_step)}")
    return "\n".join(lines)


def _magnitude_range(edges: Iterable[Edge]) -> tuple[float, float] | None:
    """log10 of the smallest and largest finite, non-zero edge gradient norms."""
    logs = [
        math.log10(e.grad.norm) for e in edges
        if e.grad is not None and math.isfinite(e.grad.norm) and e.grad.norm > 0
    ]
    return (min(logs), max(logs)) if logs else None


def _penwidth(stat: GradStat, scale: tuple[float, float] | None) -> float:
    """Edge width on a log scale of the gradient norm, between PEN_MIN and PEN_MAX."""
    if scale is None or not (math.isfinite(stat.norm) and stat.norm > 0):
        return PEN_MIN
    low, high = scale
    if high - low < 1e-12:
        return (PEN_MIN + PEN_MAX) / 2
    return PEN_MIN + (PEN_MAX - PEN_MIN) * (math.log10(stat.norm) - low) / (high - low)


def edge_attributes(edge: Edge, snapshot: Snapshot, scale: tuple[float, float] | None,
                    labelled: bool = True) -> dict[str, str]:
    """Label (unless not `labelled`), width and colour of an edge from the gradient that flowed along it."""
    source = snapshot[edge.source]
    attrs: dict[str, str] = {"color": "#616161", "arrowsize": "0.7"}
    if source.kind is NodeKind.SAVED:
        attrs.update({"style": "dashed", "color": "#ef6c00", "arrowhead": "none"})
    if edge.grad is None:
        return attrs
    text = labels.grad_value(edge.grad)
    warning = labels.nonfinite(edge.grad)
    if labelled:
        attrs["label"] = f"  {text}" + (f"\n  ⚠ {warning}" if warning else "")  # clear of a thick line
    attrs["tooltip"] = f"gradient {source.title} ← {snapshot[edge.target].title}: " + labels.grad_details(edge.grad)
    attrs["penwidth"] = f"{_penwidth(edge.grad, scale):.2f}"
    attrs["fontcolor"] = "#37474f"
    if warning:
        attrs.update({"color": NONFINITE_COLOR, "fontcolor": NONFINITE_COLOR, "penwidth": f"{PEN_MAX:.2f}"})
    return attrs


def step_findings(snapshot: Snapshot, findings: Sequence[Finding]) -> list[Finding]:
    """The doctor's findings about this step, in their order."""
    return [f for f in findings if f.step == snapshot.step]


def badge(attrs: dict[str, str], findings: Sequence[Finding]) -> dict[str, str]:
    """A node's attributes with a `⚠ rule` line per finding about it (its border is the worst one's colour)."""
    if not findings:
        return attrs
    label = attrs["label"] + "".join(f"\n⚠ {f.rule}" for f in findings)
    tooltip = attrs["tooltip"] + "".join(f"\n⚠ {f.rule}: {f.message}" for f in findings)
    return {**attrs, "label": label, "tooltip": tooltip}


def title(snapshot: Snapshot) -> str:
    """`step 3 · backward · 12 nodes`."""
    return f"step {snapshot.step} · {snapshot.call} · {len(snapshot.nodes)} nodes"


_CLUSTERED = (NodeKind.FUNCTION, NodeKind.MODULE)
CLUSTER = {"color": "#c5cae9", "fontcolor": "#3949ab", "fontsize": "9", "labeljust": "l", "style": "rounded"}


def _cluster_tree(snapshot: Snapshot) -> dict[str, list[str]]:
    """Module path -> ids of the function nodes made directly inside it, and of the collapsed
    module calls directly inside it, in walk order."""
    members: dict[str, list[str]] = {}
    for node in snapshot.nodes:
        if node.module and node.kind in _CLUSTERED:
            members.setdefault(node.module, []).append(node.id)
    return members


def _cluster_lines(paths: list[str], members: dict[str, list[str]], statements: dict[str, str]) -> list[str]:
    """Nested `subgraph cluster_…` blocks, one per module path, parents around children."""
    lines: list[str] = []
    open_paths: list[str] = []
    for index, path in enumerate(sorted(paths, key=lambda p: (p.split("."),))):
        while open_paths and not path.startswith(open_paths[-1] + "."):
            open_paths.pop()
            lines.append("  " * (len(open_paths) + 1) + "}")
        indent = "  " * (len(open_paths) + 1)
        lines.append(f"{indent}subgraph {quote(f'cluster_{index}')} {{")
        lines.append(f"{indent}  graph " + attributes({**CLUSTER, "label": path}) + ";")
        lines.extend(f"{indent}  {statements.pop(node_id)}" for node_id in members.get(path, ()))
        open_paths.append(path)
    while open_paths:
        open_paths.pop()
        lines.append("  " * (len(open_paths) + 1) + "}")
    return lines


def _module_paths(members: dict[str, list[str]]) -> list[str]:
    """Every module path with members, and each of its ancestors."""
    paths = set()
    for path in members:
        parts = path.split(".")
        paths.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
    return list(paths)


def looks(snapshot: Snapshot, about: Sequence[Finding]) -> dict[str, tuple[Look, list[Finding]]]:
    """Each node's look and the findings (of this step) about it."""
    shown = {}
    for node in snapshot.nodes:
        concerning = [f for f in about if node.id in f.nodes]
        shown[node.id] = (look(node, snapshot.step, snapshot.call, concerning), concerning)
    return shown


def node_attributes(node: Node, snapshot: Snapshot, shown: Look, findings: Sequence[Finding]) -> dict[str, str]:
    """A node's DOT attributes: its look, label and tooltip, badged with the findings about it."""
    box = box_of(snapshot, node.id)
    attrs = {**shown.attrs, "id": node.id, "label": node_label(node, snapshot.step, snapshot.call, box),
             "tooltip": node_tooltip(node, box, where_made(node, snapshot))}
    return badge(attrs, findings)


def _label(snapshot: Snapshot, unplaced: Sequence[Finding]) -> str:
    """The title, then the findings about no drawn node and the notes, left-aligned."""
    return LeftText("\n".join([title(snapshot), *text_lines(snapshot, unplaced)]))


GRAPH = {"fontname": FONT, "fontsize": "12", "labeljust": "l", "labelloc": "t", "nodesep": "0.3",
         "rankdir": "TB", "ranksep": "0.35"}
DEFAULTS = ("  node " + attributes({"fontname": FONT, "fontsize": "10", "height": "0.3", "margin": "0.08,0.04"}) + ";",
            "  edge " + attributes({"fontname": FONT, "fontsize": "9"}) + ";")


def header(graph_attrs: dict[str, str]) -> list[str]:
    """The first lines of a picture's DOT: the graph's attributes and every node's and edge's defaults."""
    return ["digraph graphscope {", "  graph " + attributes({**GRAPH, **graph_attrs}) + ";", *DEFAULTS]


def to_dot(snapshot: Snapshot, findings: Sequence[Finding] = (), edge_labels: bool = True) -> str:
    """The DOT source of a snapshot, byte-identical for the same snapshot; `findings` (the
    doctor's, for any step) badge the nodes of this step they concern and join the legend,
    which lists only the fills, borders and edges the picture has; without `edge_labels`,
    gradients are in the edges' widths and tooltips only."""
    scale = _magnitude_range(snapshot.edges)
    about = step_findings(snapshot, findings)
    shown = looks(snapshot, about)
    placed = [any(node_id in snapshot for node_id in f.nodes) for f in about]
    lines = header({"label": _label(snapshot, [f for f, p in zip(about, placed) if not p]),
                    "tooltip": title(snapshot)})
    statements = {node.id: f"{quote(node.id)} {attributes(node_attributes(node, snapshot, *shown[node.id]))};"
                  for node in snapshot.nodes}
    members = _cluster_tree(snapshot)
    clusters = _cluster_lines(_module_paths(members), members, statements)
    lines.extend(f"  {statement}" for statement in statements.values())
    lines.extend(clusters)
    for edge in snapshot.edges:
        lines.append(f"  {quote(edge.source)} -> {quote(edge.target)} {attributes(edge_attributes(edge, snapshot, scale, edge_labels))};")
    rows = node_rows([lk for lk, _ in shown.values()], [f for f, p in zip(about, placed) if p])
    lines.extend(legend(rows + edge_rows(snapshot.edges, scale, edge_labels)))
    lines.append("}")
    return "\n".join(lines) + "\n"
