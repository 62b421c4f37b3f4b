"""Gradient capture: what flowed along each edge during one backward, and what accumulated.

Hooks go on the autograd nodes of a `Walk` just before the real backward runs and are
removed right after it, also when it fails. Statistics are computed on the gradient's own
device and come back in one transfer per tensor.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch

from graphscope.model import GradStat, NodeKind
from graphscope.walker import Walk

SMALL_TENSOR = 64


def grad_stat(grad: torch.Tensor | None) -> GradStat | None:
    """Statistics of one gradient (values too when it has at most 64 elements)."""
    if grad is None:
        return None
    with torch.no_grad():
        values = grad.detach()
        if values.is_sparse:
            values = values.coalesce().values()
        if values.is_complex():
            values = values.abs()
        flat = values.reshape(-1).to(torch.float64)
        numel = grad.numel()
        if flat.numel() == 0:
            return GradStat(tuple(grad.shape), numel, 0.0, float("nan"), float("nan"), float("nan"), 0, ())
        summary = torch.stack(
            [
                torch.linalg.vector_norm(flat),
                flat.mean(),
                flat.min(),
                flat.max(),
                (~torch.isfinite(flat)).sum().to(torch.float64),
            ]
        )
        small = numel <= SMALL_TENSOR
        numbers = (torch.cat([summary, flat]) if small else summary).tolist()
    return GradStat(
        shape=tuple(grad.shape),
        numel=numel,
        norm=numbers[0],
        mean=numbers[1],
        min=numbers[2],
        max=numbers[3],
        nonfinite=int(numbers[4]),
        values=tuple(numbers[5:]) if small else None,
    )


def _sum(grads: list[torch.Tensor | None]) -> torch.Tensor | None:
    """Sum of the gradients that are present; None when none is."""
    present = [g for g in grads if g is not None]
    if not present:
        return None
    total = present[0]
    for g in present[1:]:
        total = total + g
    return total


class _Recorder:
    """Receives the node hooks of one backward call and keeps statistics, not tensors."""

    def __init__(self, walk: Walk):
        self.walk = walk
        self.leaf_sums: dict[int, torch.Tensor] = {}
        count = len(walk.functions)
        self.slot_edges: list[list[tuple[int, tuple[int, ...]]]] = [[] for _ in range(count)]
        self.leaf_slots: list[list[tuple[int, int]]] = [[] for _ in range(count)]
        self.produced: list[list[tuple[int, int]]] = [[] for _ in range(count)]
        self._index(walk)

    def _index(self, walk: Walk) -> None:
        """Per autograd node: its incoming edges by input slot, leaves it feeds, edges it produces."""
        first, nodes = walk.first_function, walk.nodes
        for edge, ((source, target), slots) in enumerate(zip(walk.edges, walk.edge_slots)):
            if slots is None or target < first:
                continue
            self.slot_edges[target - first].append((edge, slots))
            if nodes[source].kind is NodeKind.LEAF and source >= first:
                self.leaf_slots[target - first].extend((slot, source) for slot in slots)
        for fi, nr, edge in walk.produced:
            self.produced[fi].append((nr, edge))

    def hook_for(self, fi: int) -> Callable[[tuple, tuple], None]:
        """The post-hook of autograd node number `fi` of the walk."""

        def hook(grad_inputs: tuple, grad_outputs: tuple) -> None:
            with torch.no_grad():
                self.record(fi, grad_inputs, grad_outputs)

        return hook

    def record(self, fi: int, grad_inputs: tuple, grad_outputs: tuple) -> None:
        """Edge gradients into node `fi` (by input slot) and out of it (by output number)."""
        edge_grad = self.walk.edge_grad
        for edge, slots in self.slot_edges[fi]:
            edge_grad[edge] = grad_stat(_sum([grad_inputs[s] for s in slots]))
        for nr, edge in self.produced[fi]:
            if nr < len(grad_outputs):
                edge_grad[edge] = grad_stat(grad_outputs[nr])
        for slot, leaf in self.leaf_slots[fi]:
            grad = grad_inputs[slot]
            if grad is not None:
                previous = self.leaf_sums.get(leaf)
                self.leaf_sums[leaf] = grad.detach() if previous is None else previous + grad.detach()

    def finish(self) -> None:
        """After the call: stored `.grad` of leaves and retained tensors, and each node's share."""
        walk = self.walk
        for node, total in self.leaf_sums.items():
            walk.node_grad_step[node] = grad_stat(total)
        self.leaf_sums.clear()
        produced_grad = {walk.edges[edge][1]: walk.edge_grad.get(edge) for _, _, edge in walk.produced}
        for node, tensor in walk.tensors.items():
            walk.node_grad[node] = _stored_grad(tensor)
            if node not in walk.node_grad_step and node in produced_grad:
                walk.node_grad_step[node] = produced_grad[node]


def _stored_grad(tensor: torch.Tensor) -> GradStat | None:
    """`.grad` of a leaf or a retained tensor; None (without PyTorch's warning) otherwise."""
    if tensor.is_leaf or tensor.retains_grad:
        return grad_stat(tensor.grad)
    return None


@contextlib.contextmanager
def hooked(walk: Walk) -> Iterator[_Recorder]:
    """Hook every node of `walk` for the duration of the block, then remove the hooks."""
    recorder = _Recorder(walk)
    handles: list[Any] = []
    try:
        for fi, fn in enumerate(walk.functions):
            handles.append(fn.register_hook(recorder.hook_for(fi)))
        yield recorder
    finally:
        for handle in handles:
            handle.remove()
        recorder.finish()
