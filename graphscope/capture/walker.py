"""The walk from output tensors to a Snapshot: iterative, never recursive.

`walk()` reads from the autograd graph everything a Snapshot needs, into torch-free
`Pending` parts, and returns a transient `Walk` that still references the autograd nodes
(the overlay needs them to hook the backward call). The records are built from the parts
alone: at once for a capture (`Walk.build()`), or when first read for a plain trace
(`Walk.deferred()`), so a trace costs little more than the walk itself. Either way the Walk
is then dropped, and nothing of the user's graph stays alive.
"""

from __future__ import annotations

import sys
import weakref
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Mapping, Sequence

import torch

from graphscope.capture import safety
from graphscope.capture.compiled import COMPILED_OP, is_compiled_node, region_of
from graphscope.model.history import Key, Partial
from graphscope.capture.identity import Stamp, made_step
from graphscope.capture.names import NameTable, names_from_argument, names_from_frames
from graphscope.capture.outputs import check_outputs, edge_record, is_gradient_edge, output_key
from graphscope.capture.visit import Visit, visit_order
from graphscope.capture.pending import (ACCUMULATE_GRAD, TENSOR_ATTRIBUTES, Pending, paused_gc, short_op,
                                        tensor_fields)
from graphscope.capture.saved import attach_saved, saved_bytes, saved_freed
from graphscope.capture.sources import MODULE_KEY, SOURCE_KEY
from graphscope.capture.stats import StatsQueue
from graphscope.capture.tensors import attach_deep_names, attach_tensor_nodes, stamp_names
from graphscope.model import Edge, GradStat, Node, NodeKind, Snapshot

REENTRANT_CHECKPOINT = "CheckpointFunctionBackward"
REENTRANT_NOTE = ("CheckpointFunctionBackward (checkpoint with use_reentrant=True) recomputes its block in "
                  "a backward of its own: the block's ops and parameters are not in this graph; "
                  "use_reentrant=False shows them")
# Records are built with tuple.__new__, a C call: per node it is most of a build's cost.
_new = tuple.__new__
# Positions of the fields a capture fills in after a record is first made.
_NAME, _GRAD, _GRAD_STEP, _FIRST_STEP, _SOURCE, _MODULE, _ORIGIN, _CALLS, _SAVED_BYTES = map(
    Node._fields.index, ("name", "grad", "grad_step", "first_step", "source", "module", "origin", "calls",
                         "saved_bytes"))
_VARIABLE = attrgetter("variable")


@dataclass
class Walk:
    """A captured graph still attached to the autograd nodes; lives for one capture only.

    Function number `fi` is `functions[fi]`, drawn as node `first_function + fi`; `index`
    numbers the functions, `stopped` lists those the walk did not go past. Until `build()`
    the records wait in `pending`; after it, `nodes` and `edges` hold them, `children` each
    function's inputs by slot, `produced` (fi, output number, edge) for each edge from a
    function to a tensor node, and `tensors` the tensor of each leaf and tensor node (from
    `leaf_variables` and `named_tensors`, in walk order until then): what the overlay needs
    to hook the backward call and read `.grad` after it.

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
        self.tensors.update((end + count, self.named_tensors[k]) for count, k in enumerate(placed)
                            if self.named_tensors[k] is not None)
        nodes, self.edges = self.pending.build()
        self.nodes = nodes
        self.built = True
        self.produced = [(fi, nr, edge) for edge, (fi, nr) in enumerate(self.pending.tensor_node)]
        self._read_children()

    def _read_children(self) -> None:
        """Each function's inputs by slot, as function numbers (-1 for none): one more read of
        `next_functions` per function."""
        index = self.index
        stopped = set(self.stopped)
        self.children = tuple([() if fi in stopped else tuple(
            [(-1 if child is None else index[child], nr) for child, nr in fn.next_functions])
            for fi, fn in enumerate(self.functions)])

    def edge_slots(self) -> list[tuple[int, ...] | None]:
        """Each edge's input slots in its target function (None for an edge into a tensor node
        or an output, or from a saved tensor): what the overlay hooks edge gradients by."""
        first, tensor_node = self.first_function, self.pending.tensor_node
        slots_of: dict[tuple[int, int], list[int]] = {}
        for fi, inputs in enumerate(self.children):
            target = first + fi
            for slot, (child, nr) in enumerate(inputs):
                if child >= 0:
                    slots_of.setdefault((tensor_node.get((child, nr), first + child), target), []).append(slot)
        return [None if (slots := slots_of.get(pair)) is None else tuple(slots) for pair in self.edges]

    def release(self) -> None:
        """Drop every reference to the user's graph."""
        self.functions.clear()
        self.leaf_variables.clear()
        self.named_tensors.clear()
        self.index.clear()
        self.tensors.clear()

    def _settle(self) -> None:
        """Tensor nodes take the gradient that flowed into them this step: from their producer
        here, or from the history the walk stopped at (once the statistics are computed)."""
        for _, _, edge in self.produced:
            self.node_grad_step.setdefault(self.edges[edge][1], self.edge_grad.get(edge))
        after_functions = self.first_function + len(self.children)
        for node, key, nr in self.tensor_keys:
            if node >= after_functions and ("out", key, nr) in self.deep_grads:
                self.node_grad_step[node] = self.deep_grads[("out", key, nr)]

    def _records(self) -> tuple[tuple[Node, ...], tuple[Edge, ...]]:
        """The nodes and edges with their gradients' statistics (computed by now)."""
        with paused_gc():
            self._settle()
            nodes, grads, steps = self.nodes, self.node_grad, self.node_grad_step
            for i in grads.keys() | steps.keys():
                values = list(nodes[i])
                values[_GRAD], values[_GRAD_STEP] = grads.get(i), steps.get(i)
                nodes[i] = _new(Node, values)
            ids = [node.id for node in nodes]
            grads = self.edge_grad
            edges = tuple([_new(Edge, (ids[s], ids[t], grads.get(i))) for i, (s, t) in enumerate(self.edges)])
            return tuple(nodes), edges

    def freeze(self, step: int = 0, call: str = "backward", gradients: str = "full") -> Snapshot:
        """The torch-free Snapshot of this walk; drops every reference to the graph."""
        self.build()
        self.release()
        nodes, edges = self._records()
        return Snapshot(nodes=nodes, edges=edges, step=step, call=call, notes=tuple(self.notes), gradients=gradients)

    def deferred(self) -> Snapshot:
        """The Snapshot of a walk no hook saw, its records built from the parts when first read."""
        pending, notes = self.pending, tuple(self.notes)
        self.release()
        return Snapshot.deferred(pending.records, notes=notes)

    def shape(self, step: int) -> tuple:
        """What this step's graph looks like, apart from values and when it was made: its ops
        in walk order, which reads which, its outputs and named tensors, and where it meets
        earlier steps (their leaves by identity, the rest by how many steps back): two steps
        of a steady loop, or of a graph that grows by the same part each step, look alike."""
        first, leaf = self.first_function, NodeKind.LEAF
        meets = tuple(sorted((fi, self.nodes[first + fi].kind is leaf, at if self.nodes[first + fi].kind is leaf
                              else step - at, number) for fi, (at, number) in self.refs.items()))
        pending = self.pending
        return (tuple(pending.types), tuple(pending.reads), tuple(pending.roots),
                tuple(sorted(pending.tensor_node)), meets)

    def partial(self, step: int, call: str, queue: StatsQueue, gradients: str = "full",
                keep_index: bool = False) -> Partial:
        """The torch-free record of a stamped walk, for a session to rebuild the step from; its
        records are made when first read, once `queue` has computed their statistics. With
        `keep_index`, the caller still reads `index` and clears it."""
        self.build()
        index = dict(self.index) if keep_index else {}
        self.release()
        self.index = index

        def records() -> tuple[tuple[Node, ...], tuple[Edge, ...]]:
            queue.flush()
            return self._records()

        snapshot = Snapshot.deferred(records, step, call, tuple(self.notes), gradients)
        return Partial(snapshot, self.first_function, self.children, not self.stopped_early,
                       self.refs, self.roots, self.tensor_keys, self.deep_leaves, self.deep_grads, self.first_names,
                       frozenset(self.freed))

    def find_freed(self) -> None:
        """After a failed backward: mark each function of the graph, in this walk or in the
        history it stopped at, whose saved tensors are already freed (PyTorch names none)."""
        first = self.first_function
        stack, seen = list(self.functions), set(self.functions)
        while stack:
            fn = stack.pop()
            if saved_freed(fn):
                if fn in self.index:
                    node = first + self.index[fn]
                    self.nodes[node] = self.nodes[node]._replace(saved_freed=True, saved_bytes=0)
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
        """Each function's class (its op name where the class has none of its own), each
        compiled region, and each leaf's tensor, attributes and name."""
        walk, pending = self.walk, self.walk.pending
        pending.types = types = list(map(type, order))
        kinds = set(types)
        for kind in kinds.difference(_NAME_OF_TYPE):
            _raw_name(order[types.index(kind)])
        pending.kind_names = {kind: _NAME_OF_TYPE[kind] for kind in kinds}
        generic = {kind for kind, name in pending.kind_names.items() if name is None}
        if generic:
            pending.instance_names = {fi: fn.name() for fi, fn in enumerate(order) if types[fi] in generic}
        if COMPILED_OP in pending.kind_names.values():
            name = self.names.leaf_name
            pending.regions = {fi: region_of(fn, name) for fi, fn in enumerate(order) if is_compiled_node(fn)}
        leaf_types = [kind for kind in kinds if _NAME_OF_TYPE[kind] == ACCUMULATE_GRAD]
        if leaf_types:
            pending.leaf_at = _positions(types, leaf_types[0])
        walk.leaf_variables = variables = list(map(_VARIABLE, map(order.__getitem__, pending.leaf_at)))
        pending.leaf_attributes = list(map(TENSOR_ATTRIBUTES, variables))
        pending.leaf_names = list(map(self.names.leaves.get, map(id, variables)))

    def identify_all(self) -> None:
        """Stamp every function of a session's walk with the step that captured it first and
        where (its `origin`), note where an earlier step captured it, and read back the step it
        was made in, its source, module calls and, once, the bytes it saved for backward. A
        leaf keeps the first name it was given in the session."""
        walk, stamp = self.walk, self.stamp
        nodes, first = walk.nodes, walk.first_function
        key, step, at_key, leaves, leaf = stamp.key, stamp.step, stamp.at_key, stamp.leaves, NodeKind.LEAF
        keys = stamp.keys
        made_key, calls_key, bytes_key = keys.made, keys.calls, keys.bytes
        counted: set[tuple[int, int]] = set()
        for fi, fn in enumerate(walk.functions):
            metadata, node = fn.metadata, nodes[first + fi]
            captured = metadata.setdefault(key, step)
            if captured == step:
                place = metadata[at_key] = (step, fi)
            else:
                place = walk.refs[fi] = metadata[at_key]
            values = list(node)
            made = metadata.get(made_key, None if stamp.resumed and captured == step else captured)
            if node.kind is leaf:
                if captured == step:
                    leaves.tensors[place] = weakref.ref(fn.variable)
                made = leaves.first_step(fn.variable, captured)
                values[_NAME] = leaves.name(place, node.name, step, made)
            else:
                held = metadata.get(bytes_key)
                values[_SAVED_BYTES] = metadata[bytes_key] = saved_bytes(fn, counted) if held is None else held
            values[_FIRST_STEP], values[_SOURCE], values[_MODULE], values[_ORIGIN], values[_CALLS] = (
                made, metadata.get(SOURCE_KEY), metadata.get(MODULE_KEY), place, metadata.get(calls_key))
            nodes[first + fi] = _new(Node, values)

    def place_tensors(self) -> None:
        """Give each tensor node the identity of the output it stands for: its producer's
        origin and the output's number."""
        walk, step = self.walk, self.stamp.step
        nodes = walk.nodes
        for (fi, nr), node in walk.pending.tensor_node.items():
            nodes[node] = nodes[node]._replace(origin=(*walk.refs.get(fi, (step, fi)), nr))

    def next_id(self, prefix: str) -> str:
        """`tensor_3`: the prefix and how many tensor nodes of that prefix came before."""
        count = self.counters.get(prefix, 0)
        self.counters[prefix] = count + 1
        return f"{prefix}_{count}"

    def add_output(self, output: Any, name: str | None) -> int:
        """Add an output node: a tensor, or a gradient edge (whose gradient is on its edge)."""
        if not is_gradient_edge(output):
            return self.add_tensor(NodeKind.OUTPUT, output, name)
        record = edge_record(output, self.next_id("output"), name)
        if self.stamp is not None:
            record = record._replace(first_step=made_step(output.node.metadata, self.stamp),
                                     source=output.node.metadata.get(SOURCE_KEY))
        return self.walk.place(record)

    def add_tensor(self, kind: NodeKind, tensor: torch.Tensor, name: str | None) -> int:
        """Add an output, or a tensor found once the records are built (see `Walk.place`)."""
        record = self.record(kind, tensor, name, self.next_id("output" if kind is NodeKind.OUTPUT else "tensor"))
        node = self.walk.place(record)
        self.walk.tensors[node] = tensor
        return node

    def record(self, kind: NodeKind, tensor: torch.Tensor, name: str | None, node_id: str) -> Node:
        """The record of a tensor node, with its producer's step and source in a session."""
        fn = tensor.grad_fn
        op = None if fn is None else short_op(fn.name())
        record = Node(node_id, kind, op, name, **tensor_fields(tensor))
        if self.stamp is not None and fn is not None:
            record = record._replace(first_step=made_step(fn.metadata, self.stamp), source=fn.metadata.get(SOURCE_KEY))
        return record


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
            _NAME_OF_TYPE[kind] = name if short_op(name) == kind.__name__ else None
    return name


def _attach_outputs(builder: _Builder, outputs: list[Any]) -> list[Any]:
    """Output nodes first (in the order given; an output given twice is one node, with a
    note); returns the root autograd nodes."""
    roots = []
    given: dict[tuple[Any, int], int] = {}
    for position, output in enumerate(outputs):
        key = output_key(output)
        if key in given:
            builder.walk.notes.append(f"output {position} is output {given[key]} again (the same tensor): "
                                      "drawn once, with the gradients of both")
            continue
        given[key] = position
        name = builder.names.nonleaves.get(key, (None,))[0] if is_gradient_edge(output) else builder.names.name_of(output)
        node = builder.add_output(output, name)
        if hasattr(key[0], "variable"):
            builder.walk.notes.append(f"output {name or node} is itself a leaf tensor")
        builder.output_keys.append((key, node))
        roots.append(key[0])
    return roots




def resolve_names(names: Mapping[str, Any] | torch.nn.Module | None, frame: Any) -> NameTable:
    """A NameTable from an explicit `names=` argument, or from the user's frames (tensors read
    as `walk` reads them)."""
    with torch._C.DisableTorchFunction():
        return names_from_frames(frame) if names is None else names_from_argument(names)


def walk(outputs: Sequence[Any], names: NameTable, saved: bool = False, stamp: Stamp | None = None,
         visited: Visit | None = None) -> Walk:
    """Walk the graph behind `outputs` into a Walk; iterative, so depth is unbounded.

    With a `stamp`, every node records the step it was first captured in (`first_step`)
    and the source line stamped on it while sources were tracked; unless `saved` is asked
    for, the walk stops at nodes an earlier step of the same stamp captured (see history).
    A plain walk leaves its records to be built; a stamped or `saved` one builds them.
    Tensors are read past any `__torch_function__` (of a tensor subclass, or a mode such as
    `torch.device(...)` as a context manager): reading the graph runs no user code. What a
    quick look already `visited` from the same roots is not visited again.
    """
    result = Walk()
    builder = _Builder(result, names, stamp)
    with paused_gc(), torch._C.DisableTorchFunction():
        roots = _attach_outputs(builder, check_outputs(outputs))
        stop = None if stamp is None or saved else stamp.key
        same = (visited is not None and visited.stop == stop and len(visited.roots) == len(roots)
                and all(a is b for a, b in zip(visited.roots, roots)))
        result.index, order, result.pending.reads, result.stopped = visited.found if same else visit_order(roots, stop)
        result.pending.roots = [result.index[root] for root in roots]
        builder.read_functions(order)
        result.functions = order
        result.stopped_early = any(result.pending.kind_names[result.pending.types[fi]] != ACCUMULATE_GRAD
                                   for fi in result.stopped)
        safety.guard_deep_graph(len(order))
        if REENTRANT_CHECKPOINT in result.pending.kind_names.values():
            result.notes.append(REENTRANT_NOTE)
        attach_tensor_nodes(builder)
        if stamp is None and not saved:
            return result
        result.build()
        builder.counters["tensor"] = len(result.pending.tail)
        if stamp is not None:
            builder.identify_all()
            builder.place_tensors()
        if saved:
            attach_saved(builder)
        if stamp is not None:
            _keep_structure(builder)
            if result.stopped_early:
                attach_deep_names(builder)
            stamp_names(builder)
    return result


def _keep_structure(builder: _Builder) -> None:
    """What a session needs to rebuild the step later: roots, tensor nodes, leaf names."""
    walk, step = builder.walk, builder.stamp.step
    walk.roots = tuple(walk.pending.roots)
    walk.at_key = builder.stamp.at_key
    walk.first_names = builder.stamp.leaves.first_names
    walk.tensor_keys = tuple((node, walk.refs.get(fi, (step, fi)), nr)
                             for (fi, nr), node in walk.pending.tensor_node.items())


def trace(
    *outputs: torch.Tensor,
    names: Mapping[str, Any] | torch.nn.Module | None = None,
    saved: bool = False,
) -> Snapshot:
    """Snapshot of the autograd graph behind `outputs`, named from the caller's variables."""
    captured = walk(outputs, resolve_names(names, sys._getframe(1)), saved=saved)
    return captured.freeze() if saved else captured.deferred()
