"""Gradients as the model sees them: a step whose loss a GradScaler multiplied by its scale has
every gradient multiplied too (backward is linear), so dividing by that scale gives them back."""

from __future__ import annotations

from dataclasses import replace

from graphscope.model import Edge, GradStat, Node, Snapshot
from graphscope.numbers import scale_text


def _divided(stat: GradStat | None, scale: float) -> GradStat | None:
    """A gradient's statistics divided by `scale`; the NaN/Inf count stays as it was."""
    if stat is None:
        return None
    values = None if stat.values is None else tuple(v / scale for v in stat.values)
    return stat._replace(norm=stat.norm / scale, mean=stat.mean / scale, min=stat.min / scale,
                         max=stat.max / scale, values=values)


def _node(node: Node, scale: float) -> Node:
    """A node with its gradients unscaled."""
    if node.grad is None and node.grad_step is None:
        return node
    return node._replace(grad=_divided(node.grad, scale), grad_step=_divided(node.grad_step, scale))


def unscaled(snapshot: Snapshot) -> Snapshot:
    """The step with its gradients divided by its loss scale, and a note saying so; a step no
    scaler scaled is returned as it is."""
    scale = snapshot.loss_scale
    if not scale:
        return snapshot
    nodes = tuple(_node(n, scale) for n in snapshot.nodes)
    edges = tuple(Edge(e.source, e.target, _divided(e.grad, scale)) for e in snapshot.edges)
    note = (f"gradients shown unscaled: divided by {scale_text(scale)}, the GradScaler scale this step's loss "
            "was multiplied by (the JSON keeps them as computed)")
    return replace(snapshot, nodes=nodes, edges=edges, notes=(*snapshot.notes, note))
