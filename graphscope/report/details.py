"""The details the report shows of a node or a module box: everything known about it, as
(label, text) rows in the order a reader asks, gradients written as the pictures write them."""

from __future__ import annotations

from graphscope.analysis.boxes import box_of
from graphscope.model import GradStat, Node, NodeKind, Snapshot, accumulated
from graphscope.model.snapshot import where_made
from graphscope.renderers import labels
from graphscope.renderers.styles import FILL_TEXT

RETAINED_TEXT = FILL_TEXT["retained"]


def _kind_text(node: Node) -> str:
    """What the node is, in the legend's words."""
    if node.kind is NodeKind.TENSOR and node.retains_grad:
        return RETAINED_TEXT
    return FILL_TEXT.get(node.kind, node.kind.value)


def _grad_rows(title: str, stat: GradStat | None) -> list[tuple[str, str]]:
    """A gradient as rows: its short value, then statistics and values when there is more than one."""
    if stat is None:
        return []
    rows = [(title, labels.grad_value(stat))]
    if stat.numel > 1 or stat.nonfinite:
        rows.append((f"{title} statistics", labels.grad_details(stat)))
    return rows


def _flows(node: Node, snapshot: Snapshot) -> list[tuple[str, str]]:
    """The gradient that came back into this node along each of its outgoing edges."""
    return [(f"gradient from {snapshot[e.target].title}", labels.grad_value(e.grad))
            for e in snapshot.edges_out(node.id) if e.grad is not None]


def _first_step_text(node: Node, step: int) -> str | None:
    """`2 (carried over: history kept from an earlier step)` or just the step."""
    if node.first_step is None:
        return None
    if node.carried_over(step):
        return f"{node.first_step} (carried over: history kept from an earlier step)"
    return str(node.first_step)


def _box_rows(node: Node, snapshot: Snapshot) -> list[tuple[str, str]]:
    """A module box: how many calls and ops it stands for, and each parameter inside with its gradient."""
    box = box_of(snapshot, node.id)
    if box is None:
        return [("ops inside", str(node.folded))]
    calls = len(box.paths)
    rows = [("calls", f"{calls} identical calls in a row ({box.paths[0]} … {box.paths[-1]})")] if calls > 1 else []
    rows.append(("ops inside", str(node.folded)))
    stat, word = ("grad_step", "grad() computed") if snapshot.call == "grad" else ("grad", ".grad")
    for leaf in box.leaves:
        value = getattr(leaf, stat)
        grad = f"{word} {labels.grad_value(value)}" if value is not None else f"no {word}"
        rows.append((box.local_name(leaf) if calls == 1 else leaf.title, f"{labels.shape(leaf.shape)} {grad}"))
    return rows


def node_rows(node: Node, snapshot: Snapshot) -> list[tuple[str, str]]:
    """Everything known about a node as (label, text) rows, in the order a reader asks; for a
    module box, what it holds (`snapshot`: the view the box is drawn in)."""
    rows = [("kind", _kind_text(node)), ("name", node.name), ("op", node.op)] + labels.region_rows(node)
    if node.kind is NodeKind.MODULE:
        rows += _box_rows(node, snapshot)
    if node.is_tensor:
        rows += [("shape", labels.shape(node.shape)), ("dtype", node.dtype), ("device", node.device),
                 ("is_leaf", node.is_leaf), ("requires_grad", node.requires_grad),
                 ("retains_grad", node.retains_grad)]
    rows += _grad_rows(".grad", node.grad) + _grad_rows("gradient this step", node.grad_step)
    if accumulated(node, snapshot.call):
        rows.append(("warning", ".grad was not zeroed: it holds more than this step's gradient"))
    rows += _flows(node, snapshot) if node.kind is not NodeKind.MODULE else []
    folded = node.folded if node.kind is not NodeKind.MODULE else None
    source, module = where_made(node, snapshot)
    rows += [("module", module), ("ops folded in", folded),
             ("source line", source), ("first step", _first_step_text(node, snapshot.step)),
             ("saved tensors", "freed by an earlier backward" if node.saved_freed else None), ("id", node.id)]
    return [(label, str(value)) for label, value in rows if value is not None]
