"""The walk from output tensors to a Snapshot: iterative, never recursive.

`walk()` returns a transient `Walk` that still references the autograd nodes (the overlay
needs them to hook the backward call); `Walk.freeze()` turns it into a torch-free
`Snapshot` and the Walk is then dropped, so nothing of the user's graph stays alive.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import torch

from graphscope import safety
from graphscope.errors import GraphscopeError
from graphscope.history import Key, Partial
from graphscope.model import Edge, GradStat, Node, NodeKind, Snapshot
from graphscope.names import NameTable, names_from_argument, names_from_frames
from graphscope.sources import MODULE_KEY, SOURCE_KEY

ACCUMULATE_GRAD = "torch::autograd::AccumulateGrad"
# Records are built with tuple.__new__, a C call: per node it is most of the walk's cost.
_new = tuple.__new__
_EMPTY_NODE = Node("", NodeKind.FUNCTION)[3:]


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
class LeafRegistry:
    """The leaves one session has captured: a weak reference to each tensor, and the first
    name each was given (with the step), so a later step can show leaves deep in history."""

    tensors: dict[Key, weakref.ref] = field(default_factory=dict)
    first_names: dict[Key, tuple[int, str]] = field(default_factory=dict)

    def remember(self, key: Key, given: str | None, step: int) -> None:
        """Keep the name a leaf is given in `step` if it is the first it has had."""
        if given is not None:
            self.first_names.setdefault(key, (step, given))

    def name(self, key: Key, given: str | None, step: int, first_step: int) -> str | None:
        """The name a leaf shows in `step`: the one given now, else its first name, marked
        with the step the leaf comes from."""
        self.remember(key, given, step)
        first = self.first_names.get(key)
        if given is not None or first is None:
            return given
        return f"{first[1]} (from step {first_step})"


@dataclass(frozen=True)
class Stamp:
    """Identity across the steps of one recording: a metadata key unique to it, the step,
    and the session's leaves."""

    key: str
    step: int
    leaves: LeafRegistry = field(default_factory=LeafRegistry)

    @property
    def at_key(self) -> str:
        """Where a node's place in the step that captured it first is kept: (step, function number)."""
        return self.key + ".at"


@dataclass
class Walk:
    """A captured graph still attached to the autograd nodes; lives for one capture only.

    Function number `fi` is `functions[fi]`, drawn as node `first_function + fi`.
    `edge_slots[e]` holds the input slots of edge `e`'s target function (None for edges
    into tensor nodes), and `produced` lists (fi, output number, edge) for each edge from
    a function to a tensor node: what the overlay needs to hook the backward call.

    In a session (a stamped walk) the rest is what `history` needs to rebuild the step:
    `refs` maps functions an earlier step captured to where it did, `stopped` says the walk
    stopped at one of them, `children`, `roots` and `tensor_keys` are the structure as in
    `history.Partial`, and `deep_leaves`, `deep_grads` and `first_names` what was seen
    inside the history; `at_key` is the metadata key that holds a node's capture place.
    """

    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[int, int]] = field(default_factory=list)
    edge_slots: list[tuple[int, ...] | None] = field(default_factory=list)
    produced: list[tuple[int, int, int]] = field(default_factory=list)
    functions: list[Any] = field(default_factory=list)
    first_function: int = 0
    tensors: dict[int, torch.Tensor] = field(default_factory=dict)
    node_grad: dict[int, GradStat | None] = field(default_factory=dict)
    node_grad_step: dict[int, GradStat | None] = field(default_factory=dict)
    edge_grad: dict[int, GradStat | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    refs: dict[int, tuple[int, int]] = field(default_factory=dict)
    children: tuple[tuple[tuple[int, int], ...], ...] = ()
    roots: tuple[int, ...] = ()
    tensor_keys: tuple[tuple[int, Key, int], ...] = ()
    deep_leaves: dict[Key, int] = field(default_factory=dict)
    deep_grads: dict[tuple, GradStat | None] = field(default_factory=dict)
    at_key: str | None = None
    stopped: bool = False
    first_names: dict[Key, tuple[int, str]] = field(default_factory=dict)

    def freeze(self, step: int = 0, call: str = "backward") -> Snapshot:
        """The torch-free Snapshot of this walk; drops every reference to the graph."""
        with paused_gc():
            nodes = self.nodes
            for i in sorted(self.node_grad.keys() | self.node_grad_step.keys()):
                nodes[i] = nodes[i]._replace(grad=self.node_grad.get(i), grad_step=self.node_grad_step.get(i))
            ids = [node.id for node in nodes]
            grads = self.edge_grad
            edges = tuple(_new(Edge, (ids[s], ids[t], grads.get(i))) for i, (s, t) in enumerate(self.edges))
            self.functions.clear()
            self.tensors.clear()
            return Snapshot(nodes=tuple(nodes), edges=edges, step=step, call=call, notes=tuple(self.notes))

    def partial(self, step: int, call: str) -> Partial:
        """The torch-free record of a stamped walk, for a session to rebuild the step from."""
        return Partial(self.freeze(step, call), self.first_function, self.children, not self.stopped, self.refs,
                       self.roots, self.tensor_keys, self.deep_leaves, self.deep_grads, self.first_names)


class _Builder:
    """Assigns structural ids (op plus per-op counter, in walk order) and collects records."""

    def __init__(self, walk: Walk, names: NameTable, stamp: Stamp | None):
        self.walk = walk
        self.names = names
        self.stamp = stamp
        self.counters: dict[str, int] = {}
        self.fn_index: dict[Any, int] = {}
        self.tensor_node: dict[tuple[Any, int], int] = {}
        self.deep_tensors: list[tuple[int, Key, int]] = []

    def next_id(self, prefix: str) -> str:
        """`MulBackward0_3`: the prefix and how many came before it in walk order."""
        count = self.counters.get(prefix, 0)
        self.counters[prefix] = count + 1
        return f"{prefix}_{count}"

    def new_node(self, node: Node) -> int:
        """Append a node; returns its index."""
        self.walk.nodes.append(node)
        return len(self.walk.nodes) - 1

    def new_edge(self, source: int, target: int, slots: tuple[int, ...] | None = None) -> int:
        """Append an edge between two node indices; returns its index."""
        self.walk.edges.append((source, target))
        self.walk.edge_slots.append(slots)
        return len(self.walk.edges) - 1

    def add_functions(self, order: list[Any]) -> None:
        """Record the autograd nodes in walk order: a leaf for AccumulateGrad, else a function."""
        walk, counters, stamp = self.walk, self.counters, self.stamp
        walk.first_function = first = len(walk.nodes)
        append = walk.nodes.append
        short_ops: dict[str, str] = {}
        function = NodeKind.FUNCTION
        name_of = _NAME_OF_TYPE.get
        for fi, fn in enumerate(order):
            raw_name = name_of(type(fn)) or _raw_name(fn)
            if raw_name == ACCUMULATE_GRAD:
                node = self._leaf(fn, first + fi)
            else:
                count = counters.get(raw_name, 0)
                counters[raw_name] = count + 1
                op = short_ops.get(raw_name) or short_ops.setdefault(raw_name, _short_op(raw_name))
                node = _new(Node, (f"{raw_name}_{count}", function, op, *_EMPTY_NODE))
            append(node if stamp is None else self.identify(fn, fi, node))
        walk.functions.extend(order)

    def _leaf(self, fn: Any, index: int) -> Node:
        """A leaf tensor, drawn in place of its AccumulateGrad node."""
        var = fn.variable
        self.walk.tensors[index] = var
        return Node(self.next_id("leaf"), NodeKind.LEAF, "AccumulateGrad", self.names.leaf_name(var),
                    **tensor_fields(var))

    def identify(self, fn: Any, fi: int, node: Node) -> Node:
        """Stamp `fn` with the step it was first captured in and where; read back its step and
        source, and note where an earlier step captured it."""
        stamp = self.stamp
        metadata = fn.metadata
        first_step = metadata.setdefault(stamp.key, stamp.step)
        if first_step == stamp.step:
            key = metadata[stamp.at_key] = (stamp.step, fi)
        else:
            key = self.walk.refs[fi] = metadata[stamp.at_key]
        name = node.name
        if node.kind is NodeKind.LEAF:
            if first_step == stamp.step:
                stamp.leaves.tensors[key] = weakref.ref(fn.variable)
            name = stamp.leaves.name(key, name, stamp.step, first_step)
        return node._replace(name=name, first_step=first_step, source=metadata.get(SOURCE_KEY),
                             module=metadata.get(MODULE_KEY))

    def add_tensor(self, kind: NodeKind, tensor: torch.Tensor, name: str | None) -> int:
        """Record an output or named non-leaf tensor, attached after its producer."""
        prefix = "output" if kind is NodeKind.OUTPUT else "tensor"
        fn = tensor.grad_fn
        op = None if fn is None else _short_op(fn.name())
        record = Node(self.next_id(prefix), kind, op, name, **tensor_fields(tensor))
        if self.stamp is not None and fn is not None:
            record = record._replace(first_step=fn.metadata.get(self.stamp.key, self.stamp.step),
                                     source=fn.metadata.get(SOURCE_KEY))
        node = self.new_node(record)
        self.walk.tensors[node] = tensor
        return node


def _visit_order(roots: list[Any], stop: str | None = None) -> tuple[dict[Any, int], list[Any], list[tuple]]:
    """Autograd nodes reachable from `roots` in depth-first pre-order (explicit stack):
    their index, the nodes and their `next_functions`, each read once.
    A node whose metadata holds `stop` is kept, but the walk does not go past it."""
    seen: set[Any] = set()
    order: list[Any] = []
    nexts_of: list[tuple] = []
    stack = list(reversed(roots))
    push, mark, visit, keep = stack.append, seen.add, order.append, nexts_of.append
    while stack:
        fn = stack.pop()
        if fn in seen:
            continue
        mark(fn)
        visit(fn)
        if stop is not None and stop in fn.metadata:
            keep(())
            continue
        nexts = fn.next_functions
        keep(nexts)
        for child, _ in reversed(nexts):
            if child is not None and child not in seen:
                push(child)
    return dict(zip(order, range(len(order)))), order, nexts_of


_NAME_OF_TYPE: dict[type, str | None] = {}


def _raw_name(fn: Any) -> str:
    """`fn.name()`, read once per node class: every backward class has one name, except the
    generic wrapper PyTorch gives C++ nodes that have no Python class of their own."""
    kind = type(fn)
    name = _NAME_OF_TYPE.get(kind)
    if name is None:
        name = fn.name()
        if kind not in _NAME_OF_TYPE:
            _NAME_OF_TYPE[kind] = name if _short_op(name) == kind.__name__ else None
    return name


def _attach_outputs(builder: _Builder, outputs: list[torch.Tensor]) -> list[Any]:
    """Output nodes first (in the order given); returns the root autograd nodes."""
    roots = []
    for tensor in outputs:
        name = _tensor_name(builder.names, tensor)
        node = builder.add_tensor(NodeKind.OUTPUT, tensor, name)
        root = tensor.grad_fn
        if root is None:
            root = _leaf_accumulator(tensor)
            builder.walk.notes.append(f"output {name or node} is itself a leaf tensor")
        key = (root, 0 if tensor.grad_fn is None else tensor.output_nr)
        builder.tensor_node.setdefault(key, node)
        roots.append(root)
    return roots


def _tensor_name(names: NameTable, tensor: torch.Tensor) -> str | None:
    """The user's name for a tensor, leaf or not."""
    if tensor.grad_fn is None:
        return names.leaf_name(tensor)
    entry = names.nonleaves.get((tensor.grad_fn, tensor.output_nr))
    return None if entry is None else entry[0]


def _leaf_accumulator(tensor: torch.Tensor) -> Any:
    """The AccumulateGrad node of a leaf that is itself an output (`w.backward()`)."""
    return tensor.view_as(tensor).grad_fn.next_functions[0][0]


def _attach_named_tensors(builder: _Builder, nexts_of: list[tuple]) -> None:
    """Named non-leaf tensors that the graph uses become tensor nodes after their producer."""
    keys = [
        key for key in builder.names.nonleaves
        if key[0] in builder.fn_index and key not in builder.tensor_node
    ]
    if not builder.walk.stopped:
        keys = _used(keys, nexts_of)  # else the rebuilt step, which sees every reader, decides
    for key in sorted(keys, key=lambda k: (builder.fn_index[k[0]], k[1])):
        name, tensor = builder.names.nonleaves[key]
        builder.tensor_node[key] = builder.add_tensor(NodeKind.TENSOR, tensor, name)


def _used(keys: list[tuple[Any, int]], nexts_of: list[tuple]) -> list[tuple[Any, int]]:
    """The (function, output) pairs some node of the graph reads: an output of split() or
    unbind() that nothing consumes is not part of the graph. A function with one output that
    was reached is read, so only multi-output functions need a look at the edges."""
    many = {fn for fn, _ in keys if len(getattr(fn, "_input_metadata", ((), ()))) > 1}
    if not many:
        return keys
    read = {(child, nr) for nexts in nexts_of for child, nr in nexts if child in many}
    return [key for key in keys if key[0] not in many or key in read]


_FIRST_SLOT = (0,)


def _connect(builder: _Builder, nexts_of: list[tuple]) -> None:
    """Edges in forward direction: producer -> tensor node -> consumer, slot by slot."""
    walk = builder.walk
    fn_index, tensor_node, first = builder.fn_index, builder.tensor_node, walk.first_function
    for (fn, nr), node in tensor_node.items():
        fi = fn_index[fn]
        walk.produced.append((fi, nr, builder.new_edge(first + fi, node)))
    has_tensor = {fn for fn, _ in tensor_node}
    edges, edge_slots = walk.edges, walk.edge_slots
    for fi, nexts in enumerate(nexts_of):
        target = first + fi
        if len(nexts) == 1 or (len(nexts) == 2 and nexts[1][0] is None):
            child, nr = nexts[0]
            if child is not None:
                source = tensor_node.get((child, nr)) if child in has_tensor else None
                edges.append((first + fn_index[child] if source is None else source, target))
                edge_slots.append(_FIRST_SLOT)
            continue
        by_source: dict[int, list[int]] = {}
        for slot, (child, nr) in enumerate(nexts):
            if child is not None:
                source = tensor_node.get((child, nr)) if child in has_tensor else None
                by_source.setdefault(first + fn_index[child] if source is None else source, []).append(slot)
        for source, slots in by_source.items():
            builder.new_edge(source, target, tuple(slots))


def _attach_saved(builder: _Builder) -> None:
    """Tensors saved for backward become `saved` nodes; freed ones are reported, not fatal."""
    walk = builder.walk
    freed = 0
    for fi, fn in enumerate(walk.functions):
        node = walk.first_function + fi
        if walk.nodes[node].kind is NodeKind.LEAF:
            continue
        for attr in [a for a in dir(fn) if a.startswith("_saved_")]:
            try:
                value = getattr(fn, attr)
            except RuntimeError:
                walk.nodes[node] = walk.nodes[node]._replace(saved_freed=True)
                continue
            for label, tensor in _saved_tensors(attr[len("_saved_"):], value):
                saved = builder.new_node(Node(
                    builder.next_id("saved"), NodeKind.SAVED, label, _tensor_name(builder.names, tensor),
                    **tensor_fields(tensor),
                ))
                builder.new_edge(saved, node)
        freed += bool(walk.nodes[node].saved_freed)
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


def resolve_names(names: Mapping[str, Any] | torch.nn.Module | None, frame: Any) -> NameTable:
    """A NameTable from an explicit `names=` argument, or from the user's frames."""
    if names is None:
        return names_from_frames(frame)
    return names_from_argument(names)


def walk(outputs: Sequence[Any], names: NameTable, saved: bool = False, stamp: Stamp | None = None) -> Walk:
    """Walk the graph behind `outputs` into a Walk; iterative, so depth is unbounded.

    With a `stamp`, every node records the step it was first captured in (`first_step`)
    and the source line stamped on it while sources were tracked; unless `saved` is asked
    for, the walk stops at nodes an earlier step of the same stamp captured (see history).
    """
    tensors = check_outputs(outputs)
    result = Walk()
    builder = _Builder(result, names, stamp)
    with paused_gc():
        roots = _attach_outputs(builder, tensors)
        stop = None if stamp is None or saved else stamp.key
        builder.fn_index, order, nexts_of = _visit_order(roots, stop)
        builder.add_functions(order)
        result.stopped = stop is not None and any(
            result.nodes[result.first_function + fi].kind is not NodeKind.LEAF for fi in result.refs)
        safety.guard_deep_graph(len(order))
        _attach_named_tensors(builder, nexts_of)
        _connect(builder, nexts_of)
        if saved:
            _attach_saved(builder)
        if stamp is not None:
            _keep_structure(builder, roots, nexts_of)
            if result.stopped:
                _attach_deep_names(builder)
    return result


def _keep_structure(builder: _Builder, roots: list[Any], nexts_of: list[tuple]) -> None:
    """What a session needs to rebuild the step later: inputs by slot, roots, tensor nodes."""
    fn_index, walk = builder.fn_index, builder.walk
    walk.children = tuple(tuple((-1 if child is None else fn_index[child], nr) for child, nr in nexts)
                          for nexts in nexts_of)
    walk.roots = tuple(fn_index[root] for root in roots)
    walk.at_key = builder.stamp.at_key
    walk.first_names = builder.stamp.leaves.first_names
    walk.tensor_keys = tuple((node, walk.refs.get(fn_index[fn], (builder.stamp.step, fn_index[fn])), nr)
                             for (fn, nr), node in builder.tensor_node.items())


def _attach_deep_names(builder: _Builder) -> None:
    """Named tensors and leaves inside the history the walk stopped at: a tensor node for
    each named non-leaf (kept if the rebuilt step reads it), and this step's record of every
    leaf of the session still alive (its name, fields and `.grad` now)."""
    walk, stamp, names = builder.walk, builder.stamp, builder.names
    for (fn, nr), (name, tensor) in names.nonleaves.items():
        if fn not in builder.fn_index and stamp.at_key in fn.metadata:
            node = builder.add_tensor(NodeKind.TENSOR, tensor, name)
            builder.deep_tensors.append((node, fn.metadata[stamp.at_key], nr))
    local = {walk.refs.get(fi, (stamp.step, fi)) for fi in range(len(walk.children))}
    registry = stamp.leaves.tensors
    for key, tensor in [(key, ref()) for key, ref in registry.items()]:
        if tensor is None:
            del registry[key]
        elif key not in local:
            name = names.leaf_name(tensor)
            stamp.leaves.remember(key, name, stamp.step)
            walk.deep_leaves[key] = builder.add_tensor(NodeKind.LEAF, tensor, name)
    walk.tensor_keys += tuple(builder.deep_tensors)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cycle collector while building millions of records that hold no cycles:
    its full passes would otherwise rescan every record already made, again and again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def trace(
    *outputs: torch.Tensor,
    names: Mapping[str, Any] | torch.nn.Module | None = None,
    saved: bool = False,
) -> Snapshot:
    """Snapshot of the autograd graph behind `outputs`, named from the caller's variables."""
    table = resolve_names(names, sys._getframe(1))
    return walk(outputs, table, saved=saved).freeze()
