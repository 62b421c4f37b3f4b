"""What a walk starts from: output tensors, or `GradientEdge`s (an autograd node and one of
its outputs), which `torch.autograd.backward` and `torch.autograd.grad` take in their place."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from graphscope.capture.pending import fields, short_op, tensor_fields
from graphscope.errors import GraphscopeError
from graphscope.model import Node, NodeKind

_GRADIENT_EDGE = getattr(torch.autograd.graph, "GradientEdge", None)


def is_gradient_edge(value: Any) -> bool:
    """True for a `torch.autograd.graph.GradientEdge`."""
    return _GRADIENT_EDGE is not None and isinstance(value, _GRADIENT_EDGE)


def outputs_of(value: Any) -> list[Any]:
    """The tensors and gradient edges of a `tensors`/`outputs` argument (one, or a sequence)."""
    if isinstance(value, torch.Tensor) or is_gradient_edge(value):
        return [value]
    if isinstance(value, Sequence):
        return [v for v in value if isinstance(v, torch.Tensor) or is_gradient_edge(v)]
    return []


def check_outputs(outputs: Sequence[Any]) -> list[Any]:
    """Reject what has no autograd graph, with a message that says how to get one."""
    if not outputs:
        raise GraphscopeError("trace() needs at least one output tensor")
    for i, out in enumerate(outputs):
        if is_gradient_edge(out):
            continue
        if not isinstance(out, torch.Tensor):
            raise GraphscopeError(
                f"output {i} is a {type(out).__name__}, not a torch.Tensor or GradientEdge: pass the "
                "tensor you would call .backward() on"
            )
        if not out.requires_grad:
            raise GraphscopeError(
                f"output {i} has no autograd graph (requires_grad=False): it was created from "
                "tensors that do not require grad, under torch.no_grad(), or detached; "
                "set requires_grad=True on an input before the forward pass"
            )
    return list(outputs)


def _leaf_accumulator(tensor: torch.Tensor) -> Any:
    """The AccumulateGrad node of a leaf that is itself an output (`w.backward()`)."""
    return tensor.view_as(tensor).grad_fn.next_functions[0][0]


def output_key(output: Any) -> tuple[Any, int]:
    """The autograd node an output stands for, and which of its outputs it is."""
    if is_gradient_edge(output):
        return output.node, output.output_nr
    if output.grad_fn is None:
        return _leaf_accumulator(output), 0
    return output.grad_fn, output.output_nr


def edge_record(edge: Any, node_id: str, name: str | None) -> Node:
    """The output record of a gradient edge: the leaf's own attributes, else what its node
    says of that output (shape, dtype, device)."""
    node = edge.node
    if hasattr(node, "variable"):
        return Node(node_id, NodeKind.OUTPUT, None, name, **tensor_fields(node.variable))
    metadata = getattr(node, "_input_metadata", ())
    described = metadata[edge.output_nr] if edge.output_nr < len(metadata) else None
    attributes = {} if described is None else dict(zip(
        Node._fields[4:10], fields((described.shape, described.dtype, described.device, False, True, False))))
    return Node(node_id, NodeKind.OUTPUT, short_op(node.name()), name, **attributes)
