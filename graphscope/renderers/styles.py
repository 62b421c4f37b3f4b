"""How each node is drawn, and why: the fill says what the node is, the border what is wrong
with it. The legend is made from the reasons the nodes of a picture were really drawn with,
so it shows exactly the colours the picture uses."""

from __future__ import annotations

from typing import NamedTuple, Sequence

from graphscope.model import SEVERITIES, Finding, Node, NodeKind, accumulated
from graphscope.renderers import labels

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
NONFINITE_COLOR = "#d32f2f"
ACCUMULATED_COLOR = "#6a1b9a"
FINDING_COLOR = {"error": "#c62828", "warning": "#ef6c00", "info": "#1565c0"}

FILL_TEXT = {
    NodeKind.LEAF: "leaf tensor: receives .grad",
    NodeKind.TENSOR: "non-leaf tensor: .grad not stored",
    "retained": "non-leaf with retain_grad(): .grad stored",
    NodeKind.OUTPUT: "output: backward starts here",
    NodeKind.FUNCTION: "backward function",
    NodeKind.SAVED: "tensor saved for backward",
    NodeKind.MODULE: "one module call, collapsed (its ops inside)",
    NodeKind.COMPILED: "torch.compile region: its backward graph inside",
    "carried": "carried over: made in an earlier step, still in this graph",
}
BORDER_TEXT = {
    "accumulated": "purple border: .grad holds more than this step's gradient (not zeroed before this backward)",
    "nonfinite": "red border: a gradient with NaN/Inf",
    "error": "red border, ⚠: the doctor's error",
    "warning": "orange border, ⚠: the doctor's warning",
    "info": "blue border, ⚠: the doctor's note",
}


class Look(NamedTuple):
    """A node's Graphviz attributes, and the legend keys of its fill and of its border (None:
    the border that goes with its fill)."""

    attrs: dict[str, str]
    fill: NodeKind | str
    border: str | None


def fill_style(key: NodeKind | str) -> dict[str, str]:
    """The attributes of one kind of fill, as nodes drawn with it have them."""
    if key == "retained":
        return {**STYLE[NodeKind.TENSOR], **RETAINED}
    if key == "carried":
        return {**STYLE[NodeKind.FUNCTION], **CARRIED}
    return dict(STYLE[NodeKind(key)])


def border_style(key: str) -> dict[str, str]:
    """The border attributes of one legend key: accumulated, nonfinite or a finding's severity."""
    color = {"accumulated": ACCUMULATED_COLOR, "nonfinite": NONFINITE_COLOR}.get(key) or FINDING_COLOR[key]
    return {"color": color, "penwidth": "3"}


def look(node: Node, step: int, call: str = "backward", findings: Sequence[Finding] = ()) -> Look:
    """How a node is drawn: fill by what it is (retained and carried-over nodes stand out), and
    a border for the worst of the doctor's findings about it, a NaN/Inf gradient, or a .grad
    that accumulated."""
    fill: NodeKind | str = node.kind
    if node.kind is NodeKind.TENSOR and node.retains_grad:
        fill = "retained"
    if node.carried_over(step):
        fill = "carried"
    attrs = dict(STYLE[node.kind])
    attrs.update(RETAINED if fill == "retained" else {})
    attrs.update(CARRIED if fill == "carried" else {})
    border = _border(node, call, findings)
    if border is not None:
        attrs.update(border_style(border))
        if border != "accumulated":
            attrs["fontcolor"] = attrs["color"]
    return Look(attrs, fill, border)


def _border(node: Node, call: str, findings: Sequence[Finding]) -> str | None:
    """Which border a node gets: the worst finding about it, else NaN/Inf, else accumulation."""
    if findings:
        return max(findings, key=lambda f: SEVERITIES.index(f.severity)).severity
    if labels.nonfinite(node.grad) or labels.nonfinite(node.grad_step):
        return "nonfinite"
    if accumulated(node, call):
        return "accumulated"
    return None
