"""How hard a picture is to lay out, known before a layout starts, and long edges made short.

Graphviz's `dot` puts every node on a rank and threads an edge that spans several ranks
through a chain of virtual nodes, one per rank crossed; its time grows faster than linearly
with nodes, edges and virtual nodes together, so a weight shared by every step of an
unrolled RNN (edges across hundreds of ranks) makes it run for minutes where the same graph
with each use of the weight drawn apart takes a tenth of a second. `layout_cost` estimates
all three in linear time; `split_long_edges` draws a node again beside each far neighbour
(a leaf once per use), so no edge spans more than SPAN ranks. Every copy says it is one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from graphscope.model import Edge, Node, NodeKind, Snapshot

SPAN = 4
# Measured with the embedded Graphviz on a 2-core machine, gradients written on the edges:
# views of 5,000 to 16,000 units (below) lay out in 1 to 6.5 s (a 70-layer transformer),
# a chain with a leaf beside each op in 9 s at 4,000 of dot's ranks and in 24 s at 5,000;
# one of 80,000 units ran past 60 s. Edge labels double dot's ranks (each row of labels
# gets one), and about 6,900 of them exhaust the WebAssembly stack when ops have side inputs
# (8,000 when they do not).
SEGMENT_WEIGHT = 4
LAYOUT_UNITS = 16_000
MAX_RANKS = 4000


@dataclass(frozen=True)
class LayoutCost:
    """What a layout will have to place: nodes, edges, the virtual nodes long edges add
    (`segments`), the number of ranks, and whether edges carry labels (dot then gives each
    row of labels a rank of its own)."""

    nodes: int
    edges: int
    segments: int
    ranks: int
    labelled: bool = False

    @property
    def units(self) -> int:
        """One number to compare with LAYOUT_UNITS: a virtual node (a rank a long edge crosses)
        costs dot several times what a node or an edge does."""
        return self.nodes + self.edges + SEGMENT_WEIGHT * self.segments

    @property
    def dot_ranks(self) -> int:
        """The ranks dot lays out: the graph's, and one between each two when edges carry labels."""
        return 2 * self.ranks - 1 if self.labelled else self.ranks

    def fits(self, units: int = LAYOUT_UNITS, ranks: int = MAX_RANKS) -> bool:
        """True when a layout of this size finishes in seconds."""
        return self.units <= units and self.dot_ranks <= ranks

    def __str__(self) -> str:
        labels = f", {self.dot_ranks:,} with a rank for each row of edge labels" if self.labelled else ""
        return (f"{self.nodes:,} nodes, {self.edges:,} edges and {self.segments:,} rank crossings of "
                f"long edges on {self.ranks:,} ranks{labels}")


def _heights(snapshot: Snapshot) -> tuple[dict[str, int], set[str]]:
    """Each node's longest path to a node nothing uses, and the nodes on or before a cycle
    (only a view can have one), which get none."""
    waiting = {node.id: len(snapshot.users_of(node.id)) for node in snapshot.nodes}
    height = dict.fromkeys(waiting, 0)
    ready = [node_id for node_id, count in waiting.items() if count == 0]
    while ready:
        node_id = ready.pop()
        for source in snapshot.inputs_of(node_id):
            height[source] = max(height[source], height[node_id] + 1)
            waiting[source] -= 1
            if waiting[source] == 0:
                ready.append(source)
    return height, {node_id for node_id, count in waiting.items() if count > 0}


def cyclic(snapshot: Snapshot) -> set[str]:
    """The nodes on a cycle or leading into one: empty for every autograd graph."""
    return _heights(snapshot)[1]


def ranks(snapshot: Snapshot) -> dict[str, int]:
    """Each node's rank as `dot` roughly places it: as low as its longest path to an output
    allows (an input sits just above its first user), and a node nothing uses just below its
    last input. Linear time; a node on a cycle is put at the bottom."""
    height = _heights(snapshot)[0]
    top = max(height.values(), default=0)
    rank = {node_id: top - h for node_id, h in height.items()}
    for node in snapshot.nodes:
        inputs = snapshot.inputs_of(node.id)
        if inputs and not snapshot.users_of(node.id):
            rank[node.id] = max(rank[i] for i in inputs) + 1
    return rank


def layout_cost(snapshot: Snapshot, rank: dict[str, int] | None = None, labels: bool = True) -> LayoutCost:
    """The size of the layout `dot` would do for this snapshot, without doing it; `labels`:
    the picture writes each edge's gradient on it (a step's picture does, a diff does not)."""
    rank = ranks(snapshot) if rank is None else rank
    segments = sum(max(abs(rank[e.target] - rank[e.source]) - 1, 0) for e in snapshot.edges)
    levels = max(rank.values(), default=-1) - min(rank.values(), default=0) + 1
    labelled = labels and any(e.grad is not None for e in snapshot.edges)
    return LayoutCost(len(snapshot.nodes), len(snapshot.edges), segments, levels, labelled)


def _long(edge: Edge, rank: dict[str, int], span: int) -> bool:
    """True for an edge across more than `span` ranks."""
    return abs(rank[edge.target] - rank[edge.source]) > span


def _hub(edge: Edge, snapshot: Snapshot) -> str:
    """The end of a long edge to draw again beside the other: a leaf, else the end with more edges."""
    source, target = snapshot[edge.source], snapshot[edge.target]
    if source.kind is NodeKind.LEAF:
        return source.id
    degree = {n: len(snapshot.edges_in(n)) + len(snapshot.edges_out(n)) for n in (source.id, target.id)}
    return target.id if degree[target.id] > degree[source.id] else source.id


def _copy(node: Node, number: int, count: int) -> Node:
    """Copy `number` (from 0) of `count` of a node drawn again beside a far neighbour; copies
    are numbered from the top of the picture (the first use in the forward pass first)."""
    what = "use" if node.kind is NodeKind.LEAF else "copy"
    return node._replace(id=f"{node.id}~{number}", name=f"{node.title} ({what} {number + 1} of {count})")


def split_long_edges(snapshot: Snapshot, span: int = SPAN, leaves_only: bool = True) -> Snapshot:
    """A leaf with an edge across more than `span` ranks is drawn once per use; without
    `leaves_only`, any node with such edges is also drawn again beside each far neighbour
    (it stays in its place for its near ones). The same snapshot when no edge is that long."""
    rank = ranks(snapshot)
    leaves, far = set(), {}
    for index, edge in enumerate(snapshot.edges):
        if _long(edge, rank, span):
            hub = _hub(edge, snapshot)
            if snapshot[hub].kind is NodeKind.LEAF:
                leaves.add(hub)
            elif not leaves_only:
                far.setdefault(hub, []).append(index)
    for index, edge in enumerate(snapshot.edges):
        if edge.source in leaves:
            far.setdefault(edge.source, []).append(index)
    if not far:
        return snapshot
    for hub, indices in far.items():
        indices.sort(key=lambda i: rank[snapshot.edges[i].target if snapshot.edges[i].source == hub
                                        else snapshot.edges[i].source])
    view = _with_copies(snapshot, far, leaves)
    what = "leaf tensor(s)" if leaves_only else "node(s)"
    return note(view, f"view: {len(far)} {what} with edges across more than {span} ranks are drawn "
                      f"again beside each far use ({len(view.nodes) - len(snapshot.nodes) + len(leaves)} "
                      "copies, each says which)")


def _with_copies(snapshot: Snapshot, far: dict[str, list[int]], leaves: set[str]) -> Snapshot:
    """The snapshot with each leaf in `leaves` replaced by one copy per use, and each other
    node in `far` given one copy per far edge (`far`: node id -> indices of those edges)."""
    copies = {hub: [_copy(snapshot[hub], k, len(uses)) for k in range(len(uses))] for hub, uses in far.items()}
    nodes: list[Node] = []
    for node in snapshot.nodes:
        if node.id not in leaves:
            nodes.append(node)
        nodes += copies.get(node.id, ())
    moved: dict[int, Edge] = {}
    for hub, uses in far.items():
        for copy, index in zip(copies[hub], uses):
            edge = snapshot.edges[index]
            moved[index] = edge._replace(source=copy.id) if edge.source == hub else edge._replace(target=copy.id)
    edges = tuple(moved.get(i, e) for i, e in enumerate(snapshot.edges))
    return replace(snapshot, nodes=tuple(nodes), edges=edges)


def note(snapshot: Snapshot, text: str) -> Snapshot:
    """The snapshot with one more note."""
    return replace(snapshot, notes=(*snapshot.notes, text))
