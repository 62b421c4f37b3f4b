"""A walk's records before they are built: torch-free parts, read from the autograd graph in
one pass, that become the Snapshot's nodes and edges when first needed (see walker)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

from graphscope.model.history import preorder
from graphscope.model import Edge, Node, NodeKind
from graphscope.model.records import paused_gc

if TYPE_CHECKING:
    from graphscope.capture.compiled import Region

ACCUMULATE_GRAD = "torch::autograd::AccumulateGrad"
# Records are built with tuple.__new__, a C call: per node it is most of a build's cost.
_new = tuple.__new__
_EMPTY_NODE = Node("", NodeKind.FUNCTION)[3:]
_LEAF_REST = Node("", NodeKind.LEAF)[10:]
_TARGET = itemgetter(1)
TENSOR_ATTRIBUTES = attrgetter("shape", "dtype", "device", "is_leaf", "requires_grad", "retains_grad")


def short_op(name: str) -> str:
    """`torch::autograd::AccumulateGrad` -> `AccumulateGrad`."""
    return name.rsplit("::", 1)[-1]


@functools.cache
def _dtype_name(dtype: Any) -> str:
    """`torch.float32` -> `float32` (made once per dtype)."""
    return str(dtype).replace("torch.", "")


@functools.cache
def _device_name(device: Any) -> str:
    """`cpu`, `cuda:0` (made once per device)."""
    return str(device)


def fields(attributes: tuple) -> tuple:
    """Shape, dtype, device, is_leaf, requires_grad, retains_grad as the model stores them."""
    shape, dtype, device, *flags = attributes
    return (tuple(shape), _dtype_name(dtype), _device_name(device), *flags)


def tensor_fields(tensor: Any) -> dict[str, Any]:
    """The tensor attributes every tensor node carries."""
    return dict(zip(Node._fields[4:10], fields(TENSOR_ATTRIBUTES(tensor))))


@dataclass
class Pending:
    """A walk's records before they are built, holding no tensor and no autograd node: the
    outputs (`head`), each function's class (with each class's op name, and the op name of
    each function whose class has none of its own), the leaves (function number, attributes
    as read, name), every input read as (function number of the input, reader, output
    number), the outputs' functions (`roots`), which (function, output) a tensor node stands
    for, the named tensors as (function, output, record), and the compiled regions by
    function number.

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
    regions: dict[int, Region] = field(default_factory=dict)

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
            regions={new_of[fi]: region for fi, region in self.regions.items()},
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
        name_of, instance_names, regions = self.kind_names, self.instance_names, self.regions
        for fi, kind in enumerate(self.types):
            raw_name = name_of[kind] or instance_names[fi]
            count = counters.get(raw_name, 0)
            counters[raw_name] = count + 1
            if raw_name == ACCUMULATE_GRAD:
                attributes, name = leaves[fi]
                append(_new(Node, (f"leaf_{count}", leaf, "AccumulateGrad", name, *fields(attributes), *_LEAF_REST)))
            elif fi in regions:
                region = regions[fi]
                append(Node(f"{raw_name}_{count}", NodeKind.COMPILED, short_op(raw_name), region=region.name,
                            inner_ops=region.inner_ops, inner=region.inner))
            else:
                op = short_ops.get(raw_name) or short_ops.setdefault(raw_name, short_op(raw_name))
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


