"""Module boxes of a view: what each box stands for, and how nodes are replaced by boxes.

A `View` is a Snapshot that also knows, for each module box, the ops and tensors inside
it: the picture lists a box's parameters with their gradients, and the report opens it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields, replace
from typing import Mapping, Sequence

from graphscope.model import Edge, Node, NodeKind, Snapshot


@dataclass(frozen=True)
class Box:
    """What one module box of a view stands for: the nodes and edges inside it, the module
    path of each call it folds (one path for one call), and for a box folding identical calls
    in a row, the ids of their boxes."""

    members: tuple[Node, ...]
    edges: tuple[Edge, ...]
    paths: tuple[str, ...]
    calls: tuple[str, ...] = ()

    @property
    def leaves(self) -> list[Node]:
        """The leaf tensors inside (parameters and any input that receives .grad)."""
        return [n for n in self.members if n.kind is NodeKind.LEAF]

    def local_name(self, leaf: Node) -> str:
        """A leaf's name inside its call: `weight` in `model.linear`, `linear1.weight` in a layer."""
        name = leaf.title
        for path in self.paths:
            if name.startswith(path + "."):
                return name[len(path) + 1:]
        return name


@dataclass(frozen=True)
class View(Snapshot):
    """A snapshot drawn as a view: module boxes (by node id) with what each stands for."""

    boxes: Mapping[str, Box] = field(default_factory=dict)


def as_view(snapshot: Snapshot, boxes: Mapping[str, Box]) -> View:
    """The snapshot, every attribute kept, as a view with these boxes."""
    return View(**{f.name: getattr(snapshot, f.name) for f in fields(Snapshot)}, boxes=boxes)


def box_of(snapshot: Snapshot, node_id: str) -> Box | None:
    """What a module box of a view stands for; None for any other node."""
    return snapshot.boxes.get(node_id) if isinstance(snapshot, View) else None


def remap(snapshot: Snapshot, target: Mapping[str, str], extra: list[Node]) -> Snapshot:
    """Replace nodes by their stand-ins; drop edges inside a stand-in; merge parallel edges
    (an edge keeps its gradient only when it is the one edge between its two boxes)."""
    nodes, placed = [], set()
    extra_by_id = {n.id: n for n in extra}
    for node in snapshot.nodes:
        new_id = target.get(node.id, node.id)
        if new_id not in placed:
            placed.add(new_id)
            nodes.append(extra_by_id.get(new_id, node))
    pairs = [(target.get(e.source, e.source), target.get(e.target, e.target)) for e in snapshot.edges]
    return replace(snapshot, nodes=tuple(nodes), edges=merged_edges(snapshot.edges, pairs))


def merged_edges(edges: Sequence[Edge], pairs: Sequence[tuple[str, str]]) -> tuple[Edge, ...]:
    """The edges between the stand-ins `pairs` names for each edge's ends: none inside one
    stand-in, one for parallel edges (with its gradient only when it is the one edge)."""
    count = Counter(pairs)
    merged, seen = [], set()
    for edge, pair in zip(edges, pairs):
        if pair[0] == pair[1] or pair in seen:
            continue
        seen.add(pair)
        merged.append(Edge(*pair, edge.grad if count[pair] == 1 else None))
    return tuple(merged)
