"""Short human-readable strings for shapes, numbers and gradients, shared by all renderers."""

from __future__ import annotations

import math

from graphscope.model import GradStat, Node, NodeKind, accumulated
from graphscope.numbers import number

INLINE_VALUES = 4


def shape(dims: tuple[int, ...] | None) -> str:
    """`(15, 1)`, `(4,)` or `()` for a scalar."""
    if dims is None:
        return "?"
    return "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def printed(values: tuple[float, ...]) -> list[str]:
    """The values as `print(tensor)` shows them (PyTorch's default precision): four decimals,
    or scientific notation when they span more than a factor 1,000 or are very small or large;
    whole numbers without decimals. So a picture shows the digits a learner sees printed."""
    finite = [abs(v) for v in values if math.isfinite(v) and v != 0]
    whole = all(v == math.floor(v) for v in finite)
    wide = bool(finite) and (max(finite) / min(finite) > 1000 or max(finite) > 1e8 or (not whole and min(finite) < 1e-4))
    spec = ".4e" if wide else ".0f" if whole else ".4f"
    return [number(v) if not math.isfinite(v) else f"{abs(v) if v == 0 else v:{spec}}" for v in values]


def grad_value(stat: GradStat) -> str:
    """The gradient in a few characters: its value, its values, or its norm."""
    if stat.values is not None and len(stat.values) <= INLINE_VALUES:
        if len(stat.values) == 1 and stat.shape == ():
            return printed(stat.values)[0]
        return "[" + ", ".join(printed(stat.values)) + "]"
    return f"‖{number(stat.norm)}‖"


def nonfinite(stat: GradStat | None) -> str:
    """`3 NaN/Inf` when the gradient has non-finite values, else empty."""
    if stat is None or not stat.nonfinite:
        return ""
    return f"{stat.nonfinite} NaN/Inf"


def grad_details(stat: GradStat) -> str:
    """All statistics on one line, for tooltips and the text view."""
    text = (
        f"shape {shape(stat.shape)}, norm {number(stat.norm)}, mean {number(stat.mean)}, "
        f"min {number(stat.min)}, max {number(stat.max)}"
    )
    if stat.nonfinite:
        text += f", {stat.nonfinite} NaN/Inf"
    if stat.values is not None and len(stat.values) > 1:
        text += ", values [" + ", ".join(printed(stat.values)) + "]"
    return text


def kind_text(node: Node) -> str:
    """What a tensor node is, in the words a learner uses."""
    if node.kind is NodeKind.LEAF:
        return "leaf"
    if node.kind is NodeKind.SAVED:
        return f"saved {node.op}"
    text = "output" if node.kind is NodeKind.OUTPUT else "non-leaf"
    if node.kind is NodeKind.OUTPUT and node.is_leaf:
        text = "output, leaf"
    if node.retains_grad:
        text += ", retains grad"
    return text


def tensor_text(node: Node) -> str:
    """`(15, 1) float32`, with the device when it is not the CPU."""
    text = f"{shape(node.shape)} {node.dtype}"
    if node.device and node.device != "cpu":
        text += f" {node.device}"
    return text


def grad_lines(node: Node, call: str = "backward") -> list[str]:
    """The gradient lines of a tensor node: stored `.grad` and, if different, this step's share
    (for autograd.grad: the gradient the call computed, which `.grad` does not receive)."""
    lines = []
    if node.grad is not None:
        lines.append(f".grad {grad_value(node.grad)}")
    if node.grad_step is not None and call == "grad" and node.kind is NodeKind.LEAF:
        lines.append(f"grad() computed {grad_value(node.grad_step)}")
    elif node.grad_step is not None and (node.grad is None or accumulated(node)):
        stored = node.grad is not None or node.kind is NodeKind.LEAF or node.retains_grad
        lines.append(f"this step {grad_value(node.grad_step)}" + ("" if stored else " (not stored)"))
    if accumulated(node, call):
        lines.append("accumulated: .grad was not zeroed")
    for stat in (node.grad, node.grad_step):
        warning = nonfinite(stat)
        if warning:
            lines.append(f"⚠ {warning}")
            break
    return lines


def inner_ops(node: Node, limit: int = 3) -> str:
    """`t ×8 · mm ×3 · sum ×2 …`: the ops of a compiled region's backward graph, most used first."""
    counts: dict[str, int] = {}
    for inner in (node.inner or {}).get("nodes", ()):
        if inner.get("kind") == "op":
            counts[inner["op"]] = counts.get(inner["op"], 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    text = " · ".join(f"{op} ×{count}" for op, count in ranked[:limit])
    return text + (" …" if len(ranked) > limit else "")


def region_lines(node: Node) -> list[str]:
    """What a compiled region holds: its name, and its backward graph's size and ops."""
    lines = [f"compiled: {node.region}" if node.region else "compiled region"]
    if node.inner_ops is None:
        return lines + ["backward graph not kept by torch"]
    count = f"{node.inner_ops} op" + ("" if node.inner_ops == 1 else "s")
    return lines + [f"{count} in its backward", inner_ops(node)]


INNER_ROWS = 200


def region_rows(node: Node) -> list[tuple[str, str]]:
    """A compiled region opened up, as (label, text) rows: its name, then its backward graph,
    one `mm_1 = mm(t_3, relu)` row per op (at most INNER_ROWS), then what it returns."""
    if node.kind is not NodeKind.COMPILED:
        return []
    rows = [("region", node.region or "unnamed"), ("backward graph", " · ".join(region_lines(node)[1:]))]
    inner = node.inner or {"nodes": [], "edges": []}
    reads: dict[str, list[str]] = {}
    for edge in inner["edges"]:
        reads.setdefault(edge["target"], []).append(edge["source"])
    ops = [n for n in inner["nodes"] if n["kind"] in ("op", "output")]
    for op in ops[:INNER_ROWS]:
        arguments = ", ".join(reads.get(op["id"], ()))
        rows.append((op["id"], f"{op['op']}({arguments})" if op["kind"] == "op" else f"({arguments})"))
    if len(ops) > INNER_ROWS:
        rows.append(("…", f"{len(ops) - INNER_ROWS} more (all of them in the step's JSON)"))
    return rows
