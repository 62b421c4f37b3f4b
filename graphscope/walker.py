"""The walk from output tensors to a Snapshot: iterative, never recursive.

`walk()` reads from the autograd graph everything a Snapshot needs, into torch-free
`Pending` parts, and returns a transient `Walk` that still references the autograd nodes
(the overlay needs them to hook the backward call). The records are built from the parts
alone: at once for a capture (`Walk.build()`), or when first read for a plain trace
(`Walk.deferred()`), so a trace costs little more than the walk itself. Either way the Walk
is then dropped, and nothing of the user's graph stays alive.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import sys
import weakref
from dataclasses import dataclass, field, replace
from operator import attrgetter, itemgetter
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import torch

from graphscope import safety
from graphscope.errors import GraphscopeError
from graphscope.history import Key, Partial, preorder
from graphscope.model import Edge, GradStat, Node, NodeKind, Snapshot
from graphscope.names import NameTable, names_from_argument, names_from_frames
from graphscope.sources import MODULE_KEY, SOURCE_KEY

ACCUMULATE_GRAD = "torch::autograd::AccumulateGrad"
REENTRANT_CHECKPOINT = "CheckpointFunctionBackward"
REENTRANT_NOTE = ("CheckpointFunctionBackward (checkpoint with use_reentrant=True) recomputes its block in "
                  "a backward of its own: the block's ops and parameters are not in this graph; "
                  "use_reentrant=False shows them")
# Records are built with tuple.__new__, a C call: per node it is most of a build's cost.
_new = tuple.__new__
# Positions of the fields a capture fills in after a record is first made.
_NAME, _GRAD, _GRAD_STEP, _FIRST_STEP, _SOURCE, _MODULE = map(
    Node._fields.index, ("name", "grad", "grad_step", "first_step", "source", "module"))
_EMPTY_NODE = Node("", NodeKind.FUNCTION)[3:]
_LEAF_REST = Node("", NodeKind.LEAF)[10:]
_TENSOR_ATTRIBUTES = attrgetter("shape", "dtype", "device", "is_leaf", "requires_grad", "retains_grad")
_VARIABLE = attrgetter("variable")
_TARGET = itemgetter(1)


def _short_op(name: str) -> str:
    """`torch::autograd::AccumulateGrad` -> `AccumulateGrad`."""
    return name.rsplit("::", 1)[-1]


@functools.cache
def _dtype_name(dtype: torch.dtype) -> str:
    """`torch.float32` -> `float32` (made once per dtype)."""
    return str(dtype).replace("torch.", "")


@functools.cache
def _device_name(device: torch.device) -> str:
    """`cpu`, `cuda:0` (made once per device)."""
    return str(device)


def _fields(attributes: tuple) -> tuple:
    """Shape, dtype, device, is_leaf, requires_grad, retains_grad as the model stores them."""
    shape, dtype, device, *flags = attributes
    return (tuple(shape), _dtype_name(dtype), _device_name(device), *flags)


def tensor_fields(tensor: torch.Tensor) -> dict[str, Any]:
    """The tensor attributes every tensor node carries."""
    return dict(zip(Node._fields[4:10], _fields(_TENSOR_ATTRIBUTES(tensor))))


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
class Pending:
    """A walk's records before they are built, holding no tensor and no autograd node: the
    outputs (`head`), each function's class (with each class's op name, and the op name of
    each function whose class has none of its own), the leaves (function number, attributes
    as read, name), every input read as (function number of the input, reader, output
    number), the outputs' functions (`roots`), which (function, output) a tensor node stands
    for, and the named tensors as (function, output, record).

    The walk numbers functions as it first reaches them; `renumber()` turns that into the
    depth-first pre-order that ids, pictures and sessions use (inputs in slot order).
    Leaf attributes are kept as read (torch.Size, dtype, device) and turned into the
    model's strings when the records are built.
    """

    head: list[Node] = field(default_factory=list)
    types: list[type] = field(default_factory=list)
    kind_names: dict[type, str | None] = field(default_factory=dict)
    instance_names: dict[int, str] = field(default_factory=dict)
    leaf_at: list[int] = field(default_factory=list)
    leaf_attributes: list[tuple] = field(default_factory=list)
    leaf_names: list[str | None] = field(default_factory=list)
    reads: list[tuple[int, int, int]] = field(default_factory=list)
    roots: list[int] = field(default_factory=list)
    tensor_node: dict[tuple[int, int], int] = field(default_factory=dict)
    named: list[tuple[int, int, Node]] = field(default_factory=list)
    tail: list[Node] = field(default_factory=list)

    @property
    def first(self) -> int:
        """Node number of function 0: the outputs come first."""
        return len(self.head)

    def renumber(self) -> Renumbered:
        """These parts with the functions in pre-order and the named tensors placed after them,
        ordered by producer (ids `tensor_0`...); `self` is left as it was, so an interrupted
        build can start again."""
        inputs: list[list[tuple[int, int]]] = [[] for _ in self.types]
        for child, reader, nr in self.reads:
            inputs[reader].append((child, nr))
        order = preorder(self.roots, inputs.__getitem__)
        new_of = [0] * len(order)
        for new, old in enumerate(order):
            new_of[old] = new
        named = self.named
        placed = sorted(range(len(named)), key=lambda k: (new_of[named[k][0]], named[k][1]))
        end = self.first + len(order)
        tensor_node = {(new_of[fi], nr): node for (fi, nr), node in self.tensor_node.items()}
        tensor_node.update(((new_of[named[k][0]], named[k][1]), end + count) for count, k in enumerate(placed))
        renumbered = replace(
            self, types=[self.types[old] for old in order],
            instance_names={new_of[fi]: name for fi, name in self.instance_names.items()},
            leaf_at=[new_of[fi] for fi in self.leaf_at],
            reads=[(new_of[child], new_of[reader], nr) for child, reader, nr in self.reads],
            roots=[new_of[fi] for fi in self.roots], tensor_node=tensor_node, named=[],
            tail=[named[k][2]._replace(id=f"tensor_{count}") for count, k in enumerate(placed)])
        return Renumbered(renumbered, order, new_of, placed)

    def build(self) -> tuple[list[Node], list[tuple[int, int]]]:
        """Every node (outputs, functions in pre-order, named tensors) and every edge as a
        (source, target) pair of node numbers; on renumbered parts."""
        return [*self.head, *self._functions(), *self.tail], self._edges()

    def _functions(self) -> list[Node]:
        """One record per function; a leaf stands in for its AccumulateGrad."""
        leaves = dict(zip(self.leaf_at, zip(self.leaf_attributes, self.leaf_names)))
        counters: dict[str, int] = {}
        short_ops: dict[str, str] = {}
        function, leaf = NodeKind.FUNCTION, NodeKind.LEAF
        nodes = []
        append = nodes.append
        name_of, instance_names = self.kind_names, self.instance_names
        for fi, kind in enumerate(self.types):
            raw_name = name_of[kind] or instance_names[fi]
            count = counters.get(raw_name, 0)
            counters[raw_name] = count + 1
            if raw_name == ACCUMULATE_GRAD:
                attributes, name = leaves[fi]
                append(_new(Node, (f"leaf_{count}", leaf, "AccumulateGrad", name, *_fields(attributes), *_LEAF_REST)))
            else:
                op = short_ops.get(raw_name) or short_ops.setdefault(raw_name, _short_op(raw_name))
                append(_new(Node, (f"{raw_name}_{count}", function, op, *_EMPTY_NODE)))
        return nodes

    def _edges(self) -> list[tuple[int, int]]:
        """Producer -> tensor node -> consumer, then each function's inputs (by reader, in
        pre-order; inputs read through several slots are one edge)."""
        first, tensor_node = self.first, self.tensor_node
        edges = [(first + fi, node) for (fi, _), node in tensor_node.items()]
        has_tensor = {fi for fi, _ in tensor_node}
        seen: set[tuple[int, int]] = set()
        add, mark = edges.append, seen.add
        for child, reader, nr in sorted(self.reads, key=_TARGET):
            source = tensor_node.get((child, nr), first + child) if child in has_tensor else first + child
            pair = (source, first + reader)
            if pair not in seen:
                mark(pair)
                add(pair)
        return edges

    def records(self) -> tuple[tuple[Node, ...], tuple[Edge, ...]]:
        """Nodes and edges of the Snapshot these parts stand for (no gradients)."""
        with paused_gc():
            nodes, pairs = self.renumber().pending.build()
            ids = [node.id for node in nodes]
            return tuple(nodes), tuple(_new(Edge, (ids[s], ids[t], None)) for s, t in pairs)


class Renumbered(NamedTuple):
    """Parts in pre-order, the walk number of each function in its new place, the new number
    of each walk number, and the indices in `Pending.named` in the order placed."""

    pending: Pending
    order: list[int]
    new_of: list[int]
    placed: list[int]


@dataclass
class Walk:
    """A captured graph still attached to the autograd nodes; lives for one capture only.

    Function number `fi` is `functions[fi]`, drawn as node `first_function + fi`; `index`
    numbers the functions, `stopped` lists those the walk did not go past. Until `build()`
    the records wait in `pending`; after it, `nodes` and `edges` hold them, `edge_slots[e]`
    the input slots of edge `e`'s target function (None for edges into tensor nodes), and
    `produced` (fi, output number, edge) for each edge from a function to a tensor node,
    and `tensors` the tensor of each leaf and tensor node (from `leaf_variables` and
    `named_tensors`, in walk order until then): what the overlay needs to hook the backward
    call and read `.grad` after it.

    In a session (a stamped walk) the rest is what `history` needs to rebuild the step:
    `refs` maps functions an earlier step captured to where it did, `stopped_early` says the
    walk stopped at one of them, `children`, `roots` and `tensor_keys` are the structure as
    in `history.Partial`, and `deep_leaves`, `deep_grads` and `first_names` what was seen
    inside the history; `at_key` is the metadata key that holds a node's capture place.
    """

    pending: Pending = field(default_factory=Pending)
    built: bool = False
    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[int, int]] = field(default_factory=list)
    edge_slots: list[tuple[int, ...] | None] = field(default_factory=list)
    produced: list[tuple[int, int, int]] = field(default_factory=list)
    functions: list[Any] = field(default_factory=list)
    leaf_variables: list[torch.Tensor] = field(default_factory=list)
    named_tensors: list[torch.Tensor] = field(default_factory=list)
    index: dict[Any, int] = field(default_factory=dict)
    stopped: list[int] = field(default_factory=list)
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
    stopped_early: bool = False
    first_names: dict[Key, tuple[int, str]] = field(default_factory=dict)
    freed: set[Key] = field(default_factory=set)

    @property
    def first_function(self) -> int:
        """Node number of function 0."""
        return self.pending.first

    def place(self, node: Node) -> int:
        """Add a tensor node: an output before the walk, else (after the records are built)
        at the end; returns its node number."""
        records = self.nodes if self.built else self.pending.head
        records.append(node)
        return len(records) - 1

    def build(self) -> None:
        """Build the records, in pre-order, and what the overlay needs to hook them (once)."""
        if self.built:
            return
        self.pending, order, new_of, placed = self.pending.renumber()
        self.functions = [self.functions[old] for old in order]
        self.index = dict(zip(self.functions, range(len(order))))
        self.stopped = [new_of[fi] for fi in self.stopped]
        first, end = self.first_function, self.first_function + len(order)
        self.tensors.update(zip(map(first.__add__, self.pending.leaf_at), self.leaf_variables))
        self.tensors.update((end + count, self.named_tensors[k]) for count, k in enumerate(placed))
        nodes, self.edges = self.pending.build()
        self.nodes = nodes
        self.built = True
        self.produced = [(fi, nr, edge) for edge, (fi, nr) in enumerate(self.pending.tensor_node)]
        self._read_slots()

    def _read_slots(self) -> None:
        """Each function's inputs by slot (as function numbers, -1 for none) and each edge's
        slots in its target: one more read of `next_functions` per function."""
        first, index, tensor_node = self.first_function, self.index, self.pending.tensor_node
        stopped = set(self.stopped)
        slots_of: dict[tuple[int, int], list[int]] = {}
        children = []
        for fi, fn in enumerate(self.functions):
            inputs = () if fi in stopped else tuple(
                [(-1 if child is None else index[child], nr) for child, nr in fn.next_functions])
            children.append(inputs)
            target = first + fi
            for slot, (child, nr) in enumerate(inputs):
                if child >= 0:
                    slots_of.setdefault((tensor_node.get((child, nr), first + child), target), []).append(slot)
        self.children = tuple(children)
        end = first + len(self.functions)
        self.edge_slots = [tuple(slots_of[pair]) if first <= pair[1] < end else None for pair in self.edges]

    def release(self) -> None:
        """Drop every reference to the user's graph."""
        self.functions.clear()
        self.leaf_variables.clear()
        self.named_tensors.clear()
        self.index.clear()
        self.tensors.clear()

    def freeze(self, step: int = 0, call: str = "backward") -> Snapshot:
        """The torch-free Snapshot of this walk; drops every reference to the graph."""
        with paused_gc():
            self.build()
            nodes, grads, steps = self.nodes, self.node_grad, self.node_grad_step
            for i in grads.keys() | steps.keys():
                values = list(nodes[i])
                values[_GRAD], values[_GRAD_STEP] = grads.get(i), steps.get(i)
                nodes[i] = _new(Node, values)
            ids = [node.id for node in nodes]
            grads = self.edge_grad
            edges = tuple([_new(Edge, (ids[s], ids[t], grads.get(i))) for i, (s, t) in enumerate(self.edges)])
            self.release()
            return Snapshot(nodes=tuple(nodes), edges=edges, step=step, call=call, notes=tuple(self.notes))

    def deferred(self) -> Snapshot:
        """The Snapshot of a walk no hook saw, its records built from the parts when first read."""
        pending, notes = self.pending, tuple(self.notes)
        self.release()
        return Snapshot.deferred(pending.records, notes=notes)

    def partial(self, step: int, call: str) -> Partial:
        """The torch-free record of a stamped walk, for a session to rebuild the step from."""
        return Partial(self.freeze(step, call), self.first_function, self.children, not self.stopped_early,
                       self.refs, self.roots, self.tensor_keys, self.deep_leaves, self.deep_grads, self.first_names,
                       frozenset(self.freed))

    def find_freed(self) -> None:
        """After a failed backward: mark each function of the graph, in this walk or in the
        history it stopped at, whose saved tensors are already freed (PyTorch names none)."""
        first = self.first_function
        stack, seen = list(self.functions), set(self.functions)
        while stack:
            fn = stack.pop()
            if _saved_freed(fn):
                if fn in self.index:
                    node = first + self.index[fn]
                    self.nodes[node] = self.nodes[node]._replace(saved_freed=True)
                elif self.at_key in fn.metadata:
                    self.freed.add(fn.metadata[self.at_key])
            for child, _ in fn.next_functions:
                if child is not None and child not in seen:
                    seen.add(child)
                    stack.append(child)


class _Builder:
    """Reads the autograd nodes into a Walk: names, leaves, tensor nodes and, in a session,
    each node's identity across steps."""

    def __init__(self, walk: Walk, names: NameTable, stamp: Stamp | None):
        self.walk = walk
        self.names = names
        self.stamp = stamp
        self.counters: dict[str, int] = {}
        self.output_keys: list[tuple[tuple[Any, int], int]] = []

    def read_functions(self, order: list[Any]) -> None:
        """Each function's class (its op name where the class has none of its own), and each
        leaf's tensor, attributes and name."""
        walk, pending = self.walk, self.walk.pending
        pending.types = types = list(map(type, order))
        kinds = set(types)
        for kind in kinds.difference(_NAME_OF_TYPE):
            _raw_name(order[types.index(kind)])
        pending.kind_names = {kind: _NAME_OF_TYPE[kind] for kind in kinds}
        generic = {kind for kind, name in pending.kind_names.items() if name is None}
        if generic:
            pending.instance_names = {fi: fn.name() for fi, fn in enumerate(order) if types[fi] in generic}
        leaf_types = [kind for kind in kinds if _NAME_OF_TYPE[kind] == ACCUMULATE_GRAD]
        if leaf_types:
            pending.leaf_at = _positions(types, leaf_types[0])
        walk.leaf_variables = variables = list(map(_VARIABLE, map(order.__getitem__, pending.leaf_at)))
        pending.leaf_attributes = list(map(_TENSOR_ATTRIBUTES, variables))
        pending.leaf_names = list(map(self.names.leaves.get, map(id, variables)))

    def identify_all(self) -> None:
        """Stamp every function of a session's walk with the step it was first captured in
        and where; read back its step, source and module, and note where an earlier step
        captured it. A leaf keeps the first name it was given in the session."""
        walk, stamp = self.walk, self.stamp
        nodes, first = walk.nodes, walk.first_function
        key, step, at_key, leaves, leaf = stamp.key, stamp.step, stamp.at_key, stamp.leaves, NodeKind.LEAF
        for fi, fn in enumerate(walk.functions):
            metadata, node = fn.metadata, nodes[first + fi]
            first_step = metadata.setdefault(key, step)
            if first_step == step:
                place = metadata[at_key] = (step, fi)
            else:
                place = walk.refs[fi] = metadata[at_key]
            values = list(node)
            if node.kind is leaf:
                if first_step == step:
                    leaves.tensors[place] = weakref.ref(fn.variable)
                values[_NAME] = leaves.name(place, node.name, step, first_step)
            values[_FIRST_STEP], values[_SOURCE], values[_MODULE] = (
                first_step, metadata.get(SOURCE_KEY), metadata.get(MODULE_KEY))
            nodes[first + fi] = _new(Node, values)

    def next_id(self, prefix: str) -> str:
        """`tensor_3`: the prefix and how many tensor nodes of that prefix came before."""
        count = self.counters.get(prefix, 0)
        self.counters[prefix] = count + 1
        return f"{prefix}_{count}"

    def add_tensor(self, kind: NodeKind, tensor: torch.Tensor, name: str | None) -> int:
        """Add an output, or a tensor found once the records are built (see `Walk.place`)."""
        record = self.record(kind, tensor, name, self.next_id("output" if kind is NodeKind.OUTPUT else "tensor"))
        node = self.walk.place(record)
        self.walk.tensors[node] = tensor
        return node

    def record(self, kind: NodeKind, tensor: torch.Tensor, name: str | None, node_id: str) -> Node:
        """The record of a tensor node, with its producer's step and source in a session."""
        fn = tensor.grad_fn
        op = None if fn is None else _short_op(fn.name())
        record = Node(node_id, kind, op, name, **tensor_fields(tensor))
        if self.stamp is not None and fn is not None:
            record = record._replace(first_step=fn.metadata.get(self.stamp.key, self.stamp.step),
                                     source=fn.metadata.get(SOURCE_KEY))
        return record


def _visit_order(roots: list[Any], stop: str | None = None) -> tuple[dict[Any, int], list[Any], list, list[int]]:
    """Autograd nodes reachable from `roots`, numbered in the order a breadth-first walk first
    reaches them (the list of nodes found is the queue: no recursion, no stack to pop): their
    numbers, the nodes, every input read as (input's number, reader's number, output number),
    and the nodes not gone past. A node whose metadata holds `stop` is numbered, but the walk
    does not go past it."""
    index: dict[Any, int] = dict.fromkeys(roots)
    order = list(index)
    for i, root in enumerate(order):
        index[root] = i
    count = len(order)
    reads: list[tuple[int, int, int]] = []
    stopped: list[int] = []
    found, read = order.append, reads.append
    # Operators (`in`, subscripts) rather than method calls: this loop runs once per edge.
    for i, fn in enumerate(order):  # a list iterator sees what is appended while it runs
        if stop is not None and stop in fn.metadata:
            stopped.append(i)
            continue
        for child, nr in fn.next_functions:
            if child is not None:
                if child not in index:
                    index[child] = count
                    count += 1
                    found(child)
                read((index[child], i, nr))
    return index, order, reads, stopped


_NAME_OF_TYPE: dict[type, str | None] = {}


def _positions(items: list[Any], wanted: Any) -> list[int]:
    """Where `wanted` is in `items`, found by C-level `list.index` calls: a Python loop over
    every function, or `compress`, costs about twice as much."""
    positions: list[int] = []
    find, found = items.index, positions.append
    at = -1
    try:
        while True:
            at = find(wanted, at + 1)
            found(at)
    except ValueError:  # no more of them
        return positions


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
    """Output nodes first (in the order given; a tensor given twice is one node, with a
    note); returns the root autograd nodes."""
    roots = []
    given: dict[tuple[Any, int], int] = {}
    for position, tensor in enumerate(outputs):
        root = tensor.grad_fn if tensor.grad_fn is not None else _leaf_accumulator(tensor)
        key = (root, 0 if tensor.grad_fn is None else tensor.output_nr)
        if key in given:
            builder.walk.notes.append(f"output {position} is output {given[key]} again (the same tensor): "
                                      "drawn once, with the gradients of both")
            continue
        given[key] = position
        name = _tensor_name(builder.names, tensor)
        node = builder.add_tensor(NodeKind.OUTPUT, tensor, name)
        if tensor.grad_fn is None:
            builder.walk.notes.append(f"output {name or node} is itself a leaf tensor")
        builder.output_keys.append((key, node))
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


def _attach_tensor_nodes(builder: _Builder) -> None:
    """Outputs, then named non-leaf tensors that the graph uses, become tensor nodes of the
    (function, output) they stand for; named ones wait to be placed after the functions."""
    walk = builder.walk
    index, tensor_node = walk.index, walk.pending.tensor_node
    for (fn, nr), node in builder.output_keys:
        tensor_node.setdefault((index[fn], nr), node)
    keys = [(index[fn], nr, fn) for fn, nr in builder.names.nonleaves
            if fn in index and (index[fn], nr) not in tensor_node]
    if not walk.stopped_early:
        keys = _used(keys, walk.pending.reads)  # else the rebuilt step, which sees every reader, decides
    for fi, nr, fn in keys:
        name, tensor = builder.names.nonleaves[(fn, nr)]
        walk.pending.named.append((fi, nr, builder.record(NodeKind.TENSOR, tensor, name, "")))
        walk.named_tensors.append(tensor)


def _used(keys: list[tuple[int, int, Any]], reads: list[tuple[int, int, int]]) -> list[tuple[int, int, Any]]:
    """The (function, output) pairs some node of the graph reads: an output of split() or
    unbind() that nothing consumes is not part of the graph. A function with one output that
    was reached is read, so only multi-output functions need a look at the inputs read."""
    many = {fi for fi, _, fn in keys if len(getattr(fn, "_input_metadata", ((), ()))) > 1}
    if not many:
        return keys
    read = {(child, nr) for child, _, nr in reads if child in many}
    return [key for key in keys if key[0] not in many or key[:2] in read]


def _attach_saved(builder: _Builder) -> None:
    """Tensors saved for backward become `saved` nodes; freed ones are reported, not fatal."""
    walk = builder.walk
    freed = 0
    for fi, fn in enumerate(walk.functions):
        node = walk.first_function + fi
        if walk.nodes[node].kind is NodeKind.LEAF:
            continue
        for attr in _saved_attributes(fn):
            try:
                value = getattr(fn, attr)
            except RuntimeError as exc:
                if _is_freed(exc):
                    walk.nodes[node] = walk.nodes[node]._replace(saved_freed=True)
                continue
            for label, tensor in _saved_tensors(attr.removeprefix("_saved_"), value):
                saved = walk.place(Node(
                    builder.next_id("saved"), NodeKind.SAVED, label, _tensor_name(builder.names, tensor),
                    **tensor_fields(tensor),
                ))
                walk.edges.append((saved, node))
                walk.edge_slots.append(None)
        freed += bool(walk.nodes[node].saved_freed)
    if freed:
        walk.notes.append(
            f"saved tensors of {freed} function(s) were already freed: a backward ran through "
            "this graph without retain_graph=True"
        )


def _saved_freed(fn: Any) -> bool:
    """Whether a backward already freed what `fn` saved for backward."""
    for attr in _saved_attributes(fn):
        try:
            getattr(fn, attr)
        except RuntimeError as exc:
            if _is_freed(exc):
                return True
    return False


def _is_freed(exc: RuntimeError) -> bool:
    """Whether reading a saved tensor failed because a backward freed it (rather than, say,
    because an in-place op changed it since)."""
    return "freed" in str(exc)


def _saved_attributes(fn: Any) -> list[str]:
    """Where a function keeps what it saved for backward: one `_saved_<name>` attribute per
    saved value for PyTorch's own ops, `saved_tensors` for a custom autograd.Function (what
    its forward passed to ctx.save_for_backward)."""
    if isinstance(fn, torch.autograd.function.BackwardCFunction):
        return ["saved_tensors"]
    return [a for a in dir(fn) if a.startswith("_saved_")]


def _saved_tensors(label: str, value: Any) -> list[tuple[str, torch.Tensor]]:
    """The tensors inside one saved attribute (a tensor or a sequence of tensors)."""
    if isinstance(value, torch.Tensor):
        return [(label, value)]
    if isinstance(value, (list, tuple)):
        return [(f"{label}[{i}]", v) for i, v in enumerate(value) if isinstance(v, torch.Tensor)]
    return []


def resolve_names(names: Mapping[str, Any] | torch.nn.Module | None, frame: Any) -> NameTable:
    """A NameTable from an explicit `names=` argument, or from the user's frames (tensors read
    as `walk` reads them)."""
    with torch._C.DisableTorchFunction():
        return names_from_frames(frame) if names is None else names_from_argument(names)


def walk(outputs: Sequence[Any], names: NameTable, saved: bool = False, stamp: Stamp | None = None) -> Walk:
    """Walk the graph behind `outputs` into a Walk; iterative, so depth is unbounded.

    With a `stamp`, every node records the step it was first captured in (`first_step`)
    and the source line stamped on it while sources were tracked; unless `saved` is asked
    for, the walk stops at nodes an earlier step of the same stamp captured (see history).
    A plain walk leaves its records to be built; a stamped or `saved` one builds them.
    Tensors are read past any `__torch_function__` (of a tensor subclass, or a mode such as
    `torch.device(...)` as a context manager): reading the graph runs no user code.
    """
    result = Walk()
    builder = _Builder(result, names, stamp)
    with paused_gc(), torch._C.DisableTorchFunction():
        tensors = check_outputs(outputs)
        roots = _attach_outputs(builder, tensors)
        stop = None if stamp is None or saved else stamp.key
        result.index, order, result.pending.reads, result.stopped = _visit_order(roots, stop)
        result.pending.roots = [result.index[root] for root in roots]
        builder.read_functions(order)
        result.functions = order
        result.stopped_early = any(result.pending.kind_names[result.pending.types[fi]] != ACCUMULATE_GRAD
                                   for fi in result.stopped)
        safety.guard_deep_graph(len(order))
        if REENTRANT_CHECKPOINT in result.pending.kind_names.values():
            result.notes.append(REENTRANT_NOTE)
        _attach_tensor_nodes(builder)
        if stamp is None and not saved:
            return result
        result.build()
        builder.counters["tensor"] = len(result.pending.tail)
        if stamp is not None:
            builder.identify_all()
        if saved:
            _attach_saved(builder)
        if stamp is not None:
            _keep_structure(builder)
            if result.stopped_early:
                _attach_deep_names(builder)
    return result


def _keep_structure(builder: _Builder) -> None:
    """What a session needs to rebuild the step later: roots, tensor nodes, leaf names."""
    walk, step = builder.walk, builder.stamp.step
    walk.roots = tuple(walk.pending.roots)
    walk.at_key = builder.stamp.at_key
    walk.first_names = builder.stamp.leaves.first_names
    walk.tensor_keys = tuple((node, walk.refs.get(fi, (step, fi)), nr)
                             for (fi, nr), node in walk.pending.tensor_node.items())


def _attach_deep_names(builder: _Builder) -> None:
    """Named tensors and leaves inside the history the walk stopped at: a tensor node for
    each named non-leaf (kept if the rebuilt step reads it), and this step's record of every
    leaf of the session still alive (its name, fields and `.grad` now)."""
    walk, stamp, names = builder.walk, builder.stamp, builder.names
    deep_tensors = []
    for (fn, nr), (name, tensor) in names.nonleaves.items():
        if fn not in walk.index and stamp.at_key in fn.metadata:
            node = builder.add_tensor(NodeKind.TENSOR, tensor, name)
            deep_tensors.append((node, fn.metadata[stamp.at_key], nr))
    local = {walk.refs.get(fi, (stamp.step, fi)) for fi in range(len(walk.children))}
    registry = stamp.leaves.tensors
    for key, tensor in [(key, ref()) for key, ref in registry.items()]:
        if tensor is None:
            del registry[key]
        elif key not in local:
            name = names.leaf_name(tensor)
            stamp.leaves.remember(key, name, stamp.step)
            walk.deep_leaves[key] = builder.add_tensor(NodeKind.LEAF, tensor, name)
    walk.tensor_keys += tuple(deep_tensors)


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
    captured = walk(outputs, resolve_names(names, sys._getframe(1)), saved=saved)
    return captured.freeze() if saved else captured.deferred()
