"""The walk from output tensors to a Snapshot: iterative, never recursive.

`walk()` returns a transient `Walk` that still references the autograd nodes (the overlay
needs them to hook the backward call); `Walk.freeze()` turns it into a torch-free
`Snapshot` and the Walk is then dropped, so nothing of the user's graph stays alive.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from graphscope import safety
from graphscope.errors import GraphscopeError
from graphscope.model import Edge, GradStat, Node, NodeKind, Snapshot
from graphscope.names import NameTable, names_from_argument, names_from_frames

ACCUMULATE_GRAD = "torch::autograd::AccumulateGrad"


def _short_op(name: str) -> str:
    """`torch::autograd::AccumulateGrad` -> `AccumulateGrad`."""
    return name.rsplit("::", 1)[-1]


def _dtype_name(dtype: torch.dtype) -> str:
    """`torch.float32` -> `float32`."""
    return str(dtype).replace("torch.", "")


def tensor_fields(tensor: torch.Tensor) -> dict[str, Any]:
    """The tensor attributes every tensor node carries."""
    return {
        "shape": tuple(tensor.shape),
        "dtype": _dtype_name(tensor.dtype),
        "device": str(tensor.device),
        "is_leaf": tensor.is_leaf,
        "requires_grad": tensor.requires_grad,
        "retains_grad": tensor.retains_grad,
    }


def check_outputs(outputs: Sequence[Any]) -> list[torch.Tensor]:
    """Reject what has no autograd graph, with a message that says how to get one."""
    if not outputs:
        raise GraphscopeError("trace() needs at least one output tensor")
    tensors = []
    for i, out in enumerate(outputs):
        if not isinstance(out, torch.Tensor):
            raise GraphscopeError(
                f"output {i} is a {type(out).__name__}, not a torch.Tensor: pass the tensor "
                "you would call .backward() on"
            )
        if not out.requires_grad:
            raise GraphscopeError(
                f"output {i} has no autograd graph (requires_grad=False): it was created from "
                "tensors that do not require grad, under torch.no_grad(), or detached; "
                "set requires_grad=True on an input before the forward pass"
            )
        tensors.append(out)
    return tensors


@dataclass
class Walk:
    """A captured graph still attached to the autograd nodes; lives for one capture only."""

    nodes: list[dict[str, Any]] = field(default_factory=list)
    edges: list[list[str]] = field(default_factory=list)
    functions: list[Any] = field(default_factory=list)
    function_node: list[int] = field(default_factory=list)
    slot_edges: list[list[tuple[int, list[int]]]] = field(default_factory=list)
    produced_edges: list[list[tuple[int, int]]] = field(default_factory=list)
    leaf_slots: list[list[tuple[int, int]]] = field(default_factory=list)
    tensors: dict[int, torch.Tensor] = field(default_factory=dict)
    node_grad: dict[int, GradStat] = field(default_factory=dict)
    node_grad_step: dict[int, GradStat] = field(default_factory=dict)
    edge_grad: dict[int, GradStat] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def freeze(self, step: int = 0, call: str = "backward") -> Snapshot:
        """The torch-free Snapshot of this walk; drops every reference to the graph."""
        nodes = tuple(
            Node(
                **record,
                grad=self.node_grad.get(i),
                grad_step=self.node_grad_step.get(i),
            )
            for i, record in enumerate(self.nodes)
        )
        ids = [record["id"] for record in self.nodes]
        edges = tuple(
            Edge(ids[src], ids[dst], self.edge_grad.get(i)) for i, (src, dst) in enumerate(self.edges)
        )
        self.functions.clear()
        self.tensors.clear()
        return Snapshot(nodes=nodes, edges=edges, step=step, call=call, notes=tuple(self.notes))


class _Builder:
    """Assigns structural ids (op plus per-op counter, in walk order) and collects records."""

    def __init__(self, walk: Walk, names: NameTable):
        self.walk = walk
        self.names = names
        self.counters: dict[str, int] = {}
        self.fn_index: dict[Any, int] = {}
        self.tensor_node: dict[tuple[Any, int], int] = {}

    def new_node(self, kind: NodeKind, prefix: str, **fields: Any) -> int:
        """Append a node record with the next id for `prefix`; returns its index."""
        count = self.counters.get(prefix, 0)
        self.counters[prefix] = count + 1
        self.walk.nodes.append({"id": f"{prefix}_{count}", "kind": kind, **fields})
        return len(self.walk.nodes) - 1

    def new_edge(self, source: int, target: int) -> int:
        """Append an edge between two node indices; returns its index."""
        self.walk.edges.append([source, target])
        return len(self.walk.edges) - 1

    def add_function(self, fn: Any) -> int:
        """Record one autograd node: a leaf for AccumulateGrad, else a function."""
        raw_name = fn.name()
        if raw_name == ACCUMULATE_GRAD:
            var = fn.variable
            node = self.new_node(
                NodeKind.LEAF, "leaf", op=_short_op(raw_name), name=self.names.leaf_name(var),
                **tensor_fields(var),
            )
            self.walk.tensors[node] = var
        else:
            node = self.new_node(NodeKind.FUNCTION, raw_name, op=_short_op(raw_name))
        self.fn_index[fn] = len(self.walk.functions)
        self.walk.functions.append(fn)
        self.walk.function_node.append(node)
        self.walk.slot_edges.append([])
        self.walk.produced_edges.append([])
        self.walk.leaf_slots.append([])
        return node

    def add_tensor(self, kind: NodeKind, tensor: torch.Tensor, name: str | None) -> int:
        """Record an output or named non-leaf tensor, attached after its producer."""
        prefix = "output" if kind is NodeKind.OUTPUT else "tensor"
        op = None if tensor.grad_fn is None else _short_op(tensor.grad_fn.name())
        node = self.new_node(kind, prefix, op=op, name=name, **tensor_fields(tensor))
        self.walk.tensors[node] = tensor
        return node


def _visit_order(roots: list[Any]) -> list[Any]:
    """Autograd nodes reachable from `roots`, depth-first pre-order, with an explicit stack."""
    seen: set[Any] = set()
    order: list[Any] = []
    stack = list(reversed(roots))
    while stack:
        fn = stack.pop()
        if fn in seen:
            continue
        seen.add(fn)
        order.append(fn)
        nexts = fn.next_functions
        for i in range(len(nexts) - 1, -1, -1):
            child = nexts[i][0]
            if child is not None and child not in seen:
                stack.append(child)
    return order


def _attach_outputs(builder: _Builder, outputs: list[torch.Tensor]) -> list[Any]:
    """Output nodes first (in the order given); returns the root autograd nodes."""
    roots = []
    for tensor in outputs:
        name = _output_name(builder.names, tensor)
        node = builder.add_tensor(NodeKind.OUTPUT, tensor, name)
        root = tensor.grad_fn
        if root is None:
            root = _leaf_accumulator(tensor)
            builder.walk.notes.append(f"output {name or node} is itself a leaf tensor")
        key = (root, 0 if tensor.grad_fn is None else tensor.output_nr)
        builder.tensor_node.setdefault(key, node)
        roots.append(root)
    return roots


def _output_name(names: NameTable, tensor: torch.Tensor) -> str | None:
    """The user's name for an output tensor, leaf or not."""
    if tensor.grad_fn is None:
        return names.leaf_name(tensor)
    entry = names.nonleaves.get((tensor.grad_fn, tensor.output_nr))
    return None if entry is None else entry[0]


def _leaf_accumulator(tensor: torch.Tensor) -> Any:
    """The AccumulateGrad node of a leaf that is itself an output (`w.backward()`)."""
    return tensor.view_as(tensor).grad_fn.next_functions[0][0]


def _attach_named_tensors(builder: _Builder) -> None:
    """Named non-leaf tensors whose producer is in the graph become tensor nodes."""
    keys = [
        key for key in builder.names.nonleaves
        if key[0] in builder.fn_index and key not in builder.tensor_node
    ]
    for key in sorted(keys, key=lambda k: (builder.fn_index[k[0]], k[1])):
        name, tensor = builder.names.nonleaves[key]
        builder.tensor_node[key] = builder.add_tensor(NodeKind.TENSOR, tensor, name)


def _connect(builder: _Builder) -> None:
    """Edges in forward direction: producer -> tensor node -> consumer, slot by slot."""
    walk = builder.walk
    for key, tensor_node in builder.tensor_node.items():
        fn, nr = key
        fi = builder.fn_index[fn]
        edge = builder.new_edge(walk.function_node[fi], tensor_node)
        walk.produced_edges[fi].append((nr, edge))
    for fi, fn in enumerate(walk.functions):
        target = walk.function_node[fi]
        by_source: dict[int, list[int]] = {}
        for slot, (child, nr) in enumerate(fn.next_functions):
            if child is None:
                continue
            ci = builder.fn_index[child]
            source = builder.tensor_node.get((child, nr), walk.function_node[ci])
            by_source.setdefault(source, []).append(slot)
            if walk.nodes[walk.function_node[ci]]["kind"] is NodeKind.LEAF:
                walk.leaf_slots[fi].append((slot, walk.function_node[ci]))
        for source, slots in by_source.items():
            walk.slot_edges[fi].append((builder.new_edge(source, target), slots))


def _attach_saved(builder: _Builder) -> None:
    """Tensors saved for backward become `saved` nodes; freed ones are reported, not fatal."""
    walk = builder.walk
    freed = 0
    for fi, fn in enumerate(walk.functions):
        node = walk.function_node[fi]
        if walk.nodes[node]["kind"] is NodeKind.LEAF:
            continue
        for attr in [a for a in dir(fn) if a.startswith("_saved_")]:
            try:
                value = getattr(fn, attr)
            except RuntimeError:
                walk.nodes[node]["saved_freed"] = True
                continue
            for label, tensor in _saved_tensors(attr[len("_saved_"):], value):
                saved = builder.new_node(
                    NodeKind.SAVED, "saved", op=label, name=_saved_name(builder.names, tensor),
                    **tensor_fields(tensor),
                )
                builder.new_edge(saved, node)
        freed += bool(walk.nodes[node].get("saved_freed"))
    if freed:
        walk.notes.append(
            f"saved tensors of {freed} function(s) were already freed: a backward ran through "
            "this graph without retain_graph=True"
        )


def _saved_tensors(label: str, value: Any) -> list[tuple[str, torch.Tensor]]:
    """The tensors inside one saved attribute (a tensor or a sequence of tensors)."""
    if isinstance(value, torch.Tensor):
        return [(label, value)]
    if isinstance(value, (list, tuple)):
        return [(f"{label}[{i}]", v) for i, v in enumerate(value) if isinstance(v, torch.Tensor)]
    return []


def _saved_name(names: NameTable, tensor: torch.Tensor) -> str | None:
    """The user's name of a saved tensor when it is one of theirs."""
    if tensor.grad_fn is None:
        return names.leaf_name(tensor)
    entry = names.nonleaves.get((tensor.grad_fn, tensor.output_nr))
    return None if entry is None else entry[0]


def resolve_names(names: Mapping[str, Any] | torch.nn.Module | None, frame: Any) -> NameTable:
    """A NameTable from an explicit `names=` argument, or from the user's frames."""
    if names is None:
        return names_from_frames(frame)
    return names_from_argument(names)


def walk(outputs: Sequence[Any], names: NameTable, saved: bool = False) -> Walk:
    """Walk the graph behind `outputs` into a Walk; iterative, so depth is unbounded."""
    tensors = check_outputs(outputs)
    result = Walk()
    builder = _Builder(result, names)
    roots = _attach_outputs(builder, tensors)
    for fn in _visit_order(roots):
        builder.add_function(fn)
    safety.guard_deep_graph(len(result.functions))
    _attach_named_tensors(builder)
    _connect(builder)
    if saved:
        _attach_saved(builder)
    return result


def trace(
    *outputs: torch.Tensor,
    names: Mapping[str, Any] | torch.nn.Module | None = None,
    saved: bool = False,
) -> Snapshot:
    """Snapshot of the autograd graph behind `outputs`, named from the caller's variables."""
    table = resolve_names(names, sys._getframe(1))
    return walk(outputs, table, saved=saved).freeze()
