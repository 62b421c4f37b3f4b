"""Snapshot -> Graphviz DOT text: deterministic (walk order, sorted attributes), no layout.

Edges follow the forward data flow, inputs at the top and the output at the bottom.
Every user-provided string is escaped, so names cannot break the DOT or the SVG.
"""

from __future__ import annotations

import math
import textwrap
from typing import Iterable, Sequence

from graphscope.model import SEVERITIES, Edge, Finding, GradStat, Node, NodeKind, Snapshot, accumulated
from graphscope.renderers import labels

FONT = "Helvetica"
PEN_MIN, PEN_MAX = 1.0, 5.0
NONFINITE_COLOR = "#d32f2f"

STYLE = {
    NodeKind.FUNCTION: {"shape": "box", "style": "rounded,filled", "fillcolor": "#f5f5f5", "color": "#9e9e9e"},
    NodeKind.LEAF: {"shape": "box", "style": "filled", "fillcolor": "#c8e6c9", "color": "#2e7d32"},
    NodeKind.TENSOR: {"shape": "box", "style": "filled,dashed", "fillcolor": "#eceff1", "color": "#607d8b"},
    NodeKind.OUTPUT: {"shape": "box", "style": "filled", "fillcolor": "#ffe082", "color": "#ff8f00"},
    NodeKind.SAVED: {"shape": "note", "style": "filled,dashed", "fillcolor": "#fff3e0", "color": "#ef6c00"},
    NodeKind.MODULE: {"shape": "box3d", "style": "filled", "fillcolor": "#e8eaf6", "color": "#3949ab"},
    NodeKind.COMPILED: {"shape": "box", "style": "rounded,filled", "peripheries": "2", "fillcolor": "#e0f2f1",
                        "color": "#00796b"},
}
RETAINED = {"style": "filled", "fillcolor": "#bbdefb", "color": "#1565c0", "penwidth": "2"}
CARRIED = {"fillcolor": "#ffccbc", "color": "#d84315"}

LEGEND = (
    (NodeKind.LEAF, "leaf tensor: receives .grad"),
    (NodeKind.TENSOR, "non-leaf tensor: .grad not stored"),
    ("retained", "non-leaf with retain_grad(): .grad stored"),
    (NodeKind.OUTPUT, "output: backward starts here"),
    (NodeKind.FUNCTION, "backward function"),
    (NodeKind.SAVED, "tensor saved for backward"),
    (NodeKind.MODULE, "one module call, collapsed (its ops inside)"),
    (NodeKind.COMPILED, "torch.compile region: its backward graph inside"),
)


def quote(text: str) -> str:
    """A DOT double-quoted string; `&` is escaped so Graphviz never reads an entity from a name."""
    escaped = (
        text.replace("&", "&amp;").replace("\\", "\\\\").replace('"', '\\"')
        .replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    )
    return f'"{escaped}"'


def attributes(attrs: dict[str, str]) -> str:
    """`[a="1", b="2"]` with keys sorted, so output never depends on insertion order."""
    return "[" + ", ".join(f"{key}={quote(attrs[key])}" for key in sorted(attrs)) + "]"


def _node_style(node: Node, step: int, call: str = "backward") -> dict[str, str]:
    """Fill, border and shape for a node; retained, carried-over and NaN/Inf nodes stand out."""
    style = dict(STYLE[node.kind])
    if node.kind is NodeKind.TENSOR and node.retains_grad:
        style.update(RETAINED)
    if node.carried_over(step):
        style.update(CARRIED)
    if labels.nonfinite(node.grad) or labels.nonfinite(node.grad_step):
        style.update({"color": NONFINITE_COLOR, "penwidth": "3", "fontcolor": NONFINITE_COLOR})
    elif accumulated(node, call):
        style.update({"penwidth": "3", "color": "#6a1b9a"})
    return style


_CALLS = (NodeKind.FUNCTION, NodeKind.COMPILED)


def node_label(node: Node, step: int, call: str = "backward") -> str:
    """The lines drawn inside a node."""
    if node.kind is NodeKind.MODULE:
        lines = [node.name or node.id, f"{node.folded} op" + ("" if node.folded == 1 else "s")]
    elif node.kind in _CALLS:
        lines = labels.region_lines(node) if node.kind is NodeKind.COMPILED else [
            f"× {node.folded} {node.op}" if node.folded else node.op or node.id]
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


def node_tooltip(node: Node) -> str:
    """Everything known about a node, shown when hovering it in the SVG."""
    lines = [f"{node.title} ({node.id})"]
    if node.kind is NodeKind.MODULE:
        lines.append(f"one call of module {node.name}, drawn as one box: {node.folded} ops inside")
    elif node.kind is NodeKind.FUNCTION:
        lines.append(f"backward function {node.op}" + (f", {node.folded} in a row" if node.folded else ""))
        if node.module:
            lines.append(f"inside module {node.module}")
    elif node.kind is NodeKind.COMPILED:
        lines.append(f"{node.op}: " + " · ".join(labels.region_lines(node)))
    else:
        lines.append(f"{labels.kind_text(node)} {labels.tensor_text(node)}")
        lines.append(
            f"is_leaf={node.is_leaf} requires_grad={node.requires_grad} retains_grad={node.retains_grad}"
        )
        if node.kind is NodeKind.TENSOR and node.op:
            lines.append(f"produced by {node.op}")
    if node.source:
        lines.append(f"created at {node.source}")
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


def edge_attributes(edge: Edge, snapshot: Snapshot, scale: tuple[float, float] | None) -> dict[str, str]:
    """Label, width and colour of an edge from the gradient that flowed along it."""
    source = snapshot[edge.source]
    attrs: dict[str, str] = {"color": "#616161", "arrowsize": "0.7"}
    if source.kind is NodeKind.SAVED:
        attrs.update({"style": "dashed", "color": "#ef6c00", "arrowhead": "none"})
    if edge.grad is None:
        return attrs
    text = labels.grad_value(edge.grad)
    warning = labels.nonfinite(edge.grad)
    attrs["label"] = f" {text}" + (f"\n ⚠ {warning}" if warning else "")
    attrs["tooltip"] = f"gradient {source.title} ← {snapshot[edge.target].title}: " + labels.grad_details(edge.grad)
    attrs["penwidth"] = f"{_penwidth(edge.grad, scale):.2f}"
    attrs["fontcolor"] = "#37474f"
    if warning:
        attrs.update({"color": NONFINITE_COLOR, "fontcolor": NONFINITE_COLOR, "penwidth": f"{PEN_MAX:.2f}"})
    return attrs


def _legend_entries(snapshot: Snapshot) -> list[tuple[str, dict[str, str]]]:
    """(text, style) for each legend line: the node kinds present, then the edge scale."""
    kinds = {node.kind for node in snapshot.nodes if not (node.kind is NodeKind.TENSOR and node.retains_grad)}
    retained = any(n.retains_grad and n.kind is not NodeKind.LEAF for n in snapshot.nodes)
    entries = []
    for key, text in LEGEND:
        if key == "retained":
            if retained:
                entries.append((text, {**STYLE[NodeKind.TENSOR], **RETAINED}))
        elif key in kinds:
            entries.append((text, dict(STYLE[key])))
    if any(n.carried_over(snapshot.step) for n in snapshot.nodes):
        entries.append(("carried over: made in an earlier step, still in this graph",
                        {**STYLE[NodeKind.FUNCTION], **CARRIED}))
    if any(accumulated(n, snapshot.call) for n in snapshot.nodes):
        entries.append(("purple border: .grad accumulated over steps",
                        {**STYLE[NodeKind.LEAF], "color": "#6a1b9a", "penwidth": "3"}))
    plain = {"shape": "plaintext", "style": "solid"}
    scale = _magnitude_range(snapshot.edges)
    if scale is not None:
        low, high = (labels.number(10 ** v) for v in scale)
        entries.append((f"edge label: gradient that flowed back\nedge width: log ‖grad‖, "
                        f"{low} thin … {high} thick", plain))
    if any(labels.nonfinite(e.grad) for e in snapshot.edges):
        entries.append(("red: gradient with NaN/Inf", {**plain, "fontcolor": NONFINITE_COLOR}))
    entries.extend((textwrap.fill(f"note: {note}", 72), plain) for note in snapshot.notes)
    return entries


FINDING_COLOR = {"error": "#c62828", "warning": "#ef6c00", "info": "#1565c0"}


def step_findings(snapshot: Snapshot, findings: Sequence[Finding]) -> list[Finding]:
    """The doctor's findings about this step, in their order."""
    return [f for f in findings if f.step == snapshot.step]


def badge(attrs: dict[str, str], findings: Sequence[Finding]) -> dict[str, str]:
    """A node's attributes with a `⚠ rule` line per finding about it and a border in the worst colour."""
    if not findings:
        return attrs
    worst = max(findings, key=lambda f: SEVERITIES.index(f.severity))
    label = attrs["label"] + "".join(f"\n⚠ {f.rule}" for f in findings)
    tooltip = attrs["tooltip"] + "".join(f"\n⚠ {f.rule}: {f.message}" for f in findings)
    color = FINDING_COLOR[worst.severity]
    return {**attrs, "label": label, "tooltip": tooltip, "color": color, "fontcolor": color, "penwidth": "3"}


def finding_entries(findings: Sequence[Finding]) -> list[tuple[str, dict[str, str]]]:
    """Legend lines for the findings of a step: rule, severity, where, and the explanation."""
    entries = []
    for finding in findings:
        where = f" at {finding.location}" if finding.location else ""
        text = f"⚠ {finding.rule} ({finding.severity}){where}\n" + textwrap.fill(finding.message, 72)
        entries.append((text, {"shape": "plaintext", "style": "solid", "fontcolor": FINDING_COLOR[finding.severity]}))
    return entries


def legend(snapshot: Snapshot, findings: Sequence[Finding] = ()) -> list[str]:
    """DOT lines of a legend cluster: one styled sample node per line, stacked top to bottom,
    then the doctor's findings about this step."""
    lines = ["  subgraph cluster_legend {",
             "    " + attributes({"color": "#bdbdbd", "fontsize": "10", "label": "legend",
                                  "labeljust": "l", "style": "rounded"}).replace("[", "graph [", 1) + ";"]
    names = []
    for i, (text, style) in enumerate(_legend_entries(snapshot) + finding_entries(step_findings(snapshot, findings))):
        name = f"legend_{i}"
        names.append(quote(name))
        lines.append(f"    {quote(name)} {attributes({**style, 'id': name, 'label': text, 'tooltip': text})};")
    if len(names) > 1:
        lines.append("    " + " -> ".join(names) + ' [style="invis"];')
    lines.append("  }")
    return lines


def title(snapshot: Snapshot) -> str:
    """`step 3 · backward · 12 nodes`."""
    return f"step {snapshot.step} · {snapshot.call} · {len(snapshot.nodes)} nodes"


_CLUSTERED = (NodeKind.FUNCTION, NodeKind.MODULE)


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
    for number, path in enumerate(sorted(paths, key=lambda p: (p.split("."),))):
        while open_paths and not path.startswith(open_paths[-1] + "."):
            open_paths.pop()
            lines.append("  " * (len(open_paths) + 1) + "}")
        indent = "  " * (len(open_paths) + 1)
        lines.append(f"{indent}subgraph {quote(f'cluster_{number}')} {{")
        lines.append(f"{indent}  graph " + attributes({"color": "#c5cae9", "fontcolor": "#3949ab", "fontsize": "9",
                                                     "label": path, "labeljust": "l", "style": "rounded"}) + ";")
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


def to_dot(snapshot: Snapshot, findings: Sequence[Finding] = ()) -> str:
    """The DOT source of a snapshot, byte-identical for the same snapshot; `findings` (the
    doctor's, for any step) badge the nodes of this step they concern and join the legend."""
    scale = _magnitude_range(snapshot.edges)
    graph_attrs = {"fontname": FONT, "fontsize": "12", "label": title(snapshot), "labeljust": "l",
                   "labelloc": "t", "nodesep": "0.3", "rankdir": "TB", "ranksep": "0.35",
                   "tooltip": title(snapshot)}
    lines = [
        "digraph graphscope {",
        "  graph " + attributes(graph_attrs) + ";",
        "  node " + attributes({"fontname": FONT, "fontsize": "10", "height": "0.3", "margin": "0.08,0.04"}) + ";",
        "  edge " + attributes({"fontname": FONT, "fontsize": "9"}) + ";",
    ]
    statements = {}
    about = step_findings(snapshot, findings)
    for node in snapshot.nodes:
        attrs = {**_node_style(node, snapshot.step, snapshot.call), "id": node.id,
                 "label": node_label(node, snapshot.step, snapshot.call),
                 "tooltip": node_tooltip(node)}
        attrs = badge(attrs, [f for f in about if node.id in f.nodes])
        statements[node.id] = f"{quote(node.id)} {attributes(attrs)};"
    members = _cluster_tree(snapshot)
    clusters = _cluster_lines(_module_paths(members), members, statements)
    lines.extend(f"  {statement}" for statement in statements.values())
    lines.extend(clusters)
    for edge in snapshot.edges:
        lines.append(f"  {quote(edge.source)} -> {quote(edge.target)} {attributes(edge_attributes(edge, snapshot, scale))};")
    lines.extend(legend(snapshot, findings))
    lines.append("}")
    return "\n".join(lines) + "\n"
