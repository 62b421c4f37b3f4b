"""A `Snapshot`: one captured autograd graph (one backward or grad call), its nodes and edges in
walk order, so everything derived from it is deterministic; the networkx view and the
node-link JSON are built from these records on demand. `print()` and Jupyter display of a
Snapshot come from `graphscope.notebook`, which knows the renderers."""

from __future__ import annotations

import functools
import json
import operator
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, NamedTuple, Sequence

from graphscope.model.records import JSON_FORMAT_VERSION, Edge, GradStat, Node, NodeKind

if TYPE_CHECKING:
    import networkx as nx


_NODE_FIELDS = Node._fields
_GRAD_FIELDS = ("grad", "grad_step")
# Written only when set, so graphs that do not use them read as they always have.
_OPTIONAL_FIELDS = ("saved_freed", "folded", "origin", "calls", "saved_bytes", "region", "inner_ops", "inner")


DIGESTED = (NodeKind.OUTPUT, NodeKind.LEAF, NodeKind.TENSOR)
# One lock for every deferred build (re-entrant: rebuilding a step reads earlier steps): a
# long run keeps a snapshot a step, and a lock each is one more object for the collector.
_BUILDING = threading.RLock()


STAMPS_TAKEN = ("file:line and module stamps of this step's ops are those of step {step}, whose graph has the same "
                "shape: stamping steps aside once a loop is steady")


_TAKEN_HEAD, _TAKEN_TAIL = STAMPS_TAKEN.split("{step}")


def stamps_taken_from(notes: Sequence[str]) -> int | None:
    """The step whose stamps this step's ops took (its note says so), or None."""
    for note in notes:
        step = note[len(_TAKEN_HEAD):-len(_TAKEN_TAIL)]
        if note.startswith(_TAKEN_HEAD) and note.endswith(_TAKEN_TAIL) and step.isdigit():
            return int(step)
    return None


def where_made(node: Node, snapshot: Snapshot) -> tuple[str | None, str | None]:
    """A node's `file:line` and module as pictures and pages show them: for an op made in a
    step whose stamps were taken from an earlier step of its shape, marked as that step's."""
    taken = snapshot.stamps_from
    if taken is None or node.kind is NodeKind.LEAF or node.first_step != snapshot.step:
        return node.source, node.module
    mark = f" (as in step {taken})"
    return (node.source and node.source + mark), (node.module and node.module + mark)


class Digest(NamedTuple):
    """A whole graph summed up for the passes that read every step of a run (growth rows, the
    doctor's scans): its sizes, the history it carries, the files its nodes were made in,
    its output, leaf and named tensor nodes in walk order, and the gradients on its edges.
    A step rebuilt from partials digests them without making its function records; its
    `gradients` then also hold those it recorded on edges its whole graph leaves out. `like`
    is the step whose graph this one repeats (the same ids, ops, names and edges), when the
    capture knew it."""

    nodes: int
    edges: int
    carried: int  # nodes carried over from earlier steps
    carried_steps: frozenset[int]  # the steps those were made in
    held: int | None  # bytes the carried functions saved for backward; None when one was not counted
    sources: frozenset[str]
    tensors: tuple[Node, ...]
    gradients: tuple[GradStat, ...]
    like: int | None = None


class Repeat(NamedTuple):
    """The records of a step that repeats step `like`'s graph (see Partial.like), as far as
    they may differ from that step's records moved to it (`graphscope.model.partials.moved`,
    with `calls_shift` and `sized`): every record left out is known to be the moved one, so a
    long loop is written and digested without making them."""

    records: dict[int, Node]  # by position in the graph's records, in that order
    calls_shift: int
    sized: bool


def held_bytes(carried: Iterable[Node]) -> int | None:
    """The bytes carried functions saved for backward; None when any was not counted."""
    functions = [n for n in carried if n.kind in (NodeKind.FUNCTION, NodeKind.COMPILED)]
    if any(n.saved_bytes is None for n in functions):
        return None
    return sum(n.saved_bytes for n in functions)


def digest_of(nodes: Sequence[Node], edges: Sequence[Edge], step: int) -> Digest:
    """The digest of a graph from its records."""
    carried = [n for n in nodes if n.carried_over(step)]
    return Digest(len(nodes), len(edges), len(carried), frozenset(n.first_step for n in carried), held_bytes(carried),
                  frozenset(n.source for n in nodes if n.source), tuple(n for n in nodes if n.kind in DIGESTED),
                  tuple(e.grad for e in edges if e.grad is not None))


def field_to_json(name: str, value: Any) -> Any:
    """One node attribute as JSON-ready data."""
    if value is None:
        return None
    if name in _GRAD_FIELDS:
        return value.to_dict()
    return value.value if name == "kind" else value


def field_from_json(name: str, data: Any) -> Any:
    """Inverse of `field_to_json`."""
    if data is None:
        return None
    if name in _GRAD_FIELDS:
        return GradStat.from_dict(data)
    if name == "kind":
        return NodeKind(data)
    if name in ("shape", "origin"):
        return tuple(data)
    return tuple(tuple(pair) for pair in data) if name == "calls" else data


_SORTED_FIELDS = tuple(sorted(_NODE_FIELDS))
_optional_values = operator.itemgetter(*(_NODE_FIELDS.index(name) for name in _OPTIONAL_FIELDS))
_NO_VALUES = (None,) * len(_OPTIONAL_FIELDS)


@functools.cache
def _written_fields(present: tuple[bool, ...]) -> tuple[tuple[str, ...], Callable[[Node], tuple]]:
    """The fields a node writes, sorted, when its optional fields are set as `present` says,
    and what reads their values from the node (a node has one of a few such sets)."""
    names = tuple(name for name in _SORTED_FIELDS
                  if name not in _OPTIONAL_FIELDS or present[_OPTIONAL_FIELDS.index(name)])
    return names, operator.itemgetter(*(_NODE_FIELDS.index(name) for name in names))


def _node_to_dict(node: Node) -> dict[str, Any]:
    """JSON-ready attributes of a node, in sorted order (see node_link_json); the stable names
    of the node-link format."""
    names, values = _written_fields(tuple(map(operator.is_not, _optional_values(node), _NO_VALUES)))
    data = dict(zip(names, values(node)))
    data["kind"] = node.kind.value
    for name in _GRAD_FIELDS:
        stat = data[name]
        if stat is not None:
            data[name] = stat.to_dict()
    return data


def _node_from_dict(data: Mapping[str, Any]) -> Node:
    """Inverse of `_node_to_dict`."""
    return Node(**{name: field_from_json(name, data.get(name)) for name in _NODE_FIELDS})


@dataclass(frozen=True)
class Snapshot:
    """One captured autograd graph: nodes and edges in walk order plus graph attributes."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    step: int = 0
    call: str = "backward"
    notes: tuple[str, ...] = ()
    loss_scale: float | None = None
    gradients: str = "full"

    @classmethod
    def deferred(cls, build: Callable[[], tuple[tuple[Node, ...], tuple[Edge, ...]]], step: int = 0,
                 call: str = "backward", notes: tuple[str, ...] = (), gradients: str = "full",
                 loss_scale: float | None = None, digest: Callable[[], Digest] | None = None) -> Snapshot:
        """A Snapshot whose nodes and edges `build()` makes when they are first read: a large
        trace that is only counted, saved or drawn as a view pays for its records once, and a
        recorded step's gradient statistics can wait to be computed in a batch. `digest()`,
        when given, sums the graph up without building its records (as does `build.digest()`,
        when `build` has one; and `build.repeat()` gives `repeat()`)."""
        snapshot = cls.__new__(cls)
        for name, value in (("step", step), ("call", call), ("notes", notes), ("loss_scale", loss_scale),
                            ("gradients", gradients), ("_build", build)):
            object.__setattr__(snapshot, name, value)
        if digest is not None:  # a long run keeps a snapshot a step: no attribute it does not need
            object.__setattr__(snapshot, "_digester", digest)
        return snapshot

    def digest(self) -> Digest:
        """The graph summed up (see Digest), once: from a deferred snapshot's digester while
        its records are not built, else from its records."""
        found = self.__dict__.get("_digest")
        if found is None:
            digester = self.__dict__.get("_digester") or getattr(self.__dict__.get("_build"), "digest", None)
            if digester is not None and "nodes" not in self.__dict__:
                found = digester()
            else:
                found = digest_of(self.nodes, self.edges, self.step)
            self.__dict__["_digest"] = found
        return found

    def repeat(self) -> Repeat | None:
        """What a deferred builder knows of a step that repeats an earlier step's graph (see
        Repeat), while the records are not built; else None."""
        known = getattr(self.__dict__.get("_build"), "repeat", None)
        return None if known is None else known()

    def __getattr__(self, name: str) -> Any:
        """Build the records of a deferred Snapshot on first access to `nodes` or `edges`
        (once, also when several threads read it at the same time)."""
        if name in ("nodes", "edges") and "_build" in self.__dict__:
            with _BUILDING:
                build = self.__dict__.get("_build")
                if build is not None:
                    nodes, edges = build()
                    object.__setattr__(self, "nodes", nodes)
                    object.__setattr__(self, "edges", edges)
                    del self.__dict__["_build"]
        if name in ("nodes", "edges") and name in self.__dict__:
            return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the records themselves, built first if they were deferred."""
        self.nodes  # noqa: B018 - reading builds deferred records
        return {name: self.__dict__.get(name)
                for name in ("nodes", "edges", "step", "call", "notes", "loss_scale", "gradients")}

    @functools.cached_property
    def _index(self) -> dict[str, Node]:
        """Nodes by id, built on first lookup (a plain trace may never need it)."""
        return {node.id: node for node in self.nodes}

    def __getitem__(self, node_id: str) -> Node:
        return self._index[node_id]

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._index

    def __len__(self) -> int:
        return len(self.nodes)

    def find(self, name: str) -> Node:
        """The node the user named `name`; KeyError lists the names there are."""
        for node in self.nodes:
            if node.name == name:
                return node
        known = sorted({n.name for n in self.nodes if n.name})
        raise KeyError(f"no node named {name!r} in step {self.step}; named nodes: {known}")

    def of_kind(self, kind: NodeKind | str) -> list[Node]:
        """All nodes of one kind, in walk order (a new list each call); outputs, leaves and
        named tensors from the digest, which a rebuilt step makes without its functions."""
        kind = kind if type(kind) is NodeKind else NodeKind(kind)  # the rules ask millions of times
        if kind in DIGESTED:
            return [node for node in self.digest().tensors if node.kind is kind]
        return list(self._kinds.get(kind, ()))

    @functools.cached_property
    def stamps_from(self) -> int | None:
        """The step whose stamps this step's ops took (see `stamps_taken_from`), read once: the
        pictures and pages ask it of every node."""
        return stamps_taken_from(self.notes)

    @functools.cached_property
    def _kinds(self) -> dict[NodeKind, list[Node]]:
        """Nodes by kind, in walk order, sorted out once: the doctor's rules ask every step
        for its leaves, tensors and outputs several times."""
        kinds: dict[NodeKind, list[Node]] = {}
        for node in self.nodes:
            kinds.setdefault(node.kind, []).append(node)
        return kinds

    def edge(self, source: str, target: str) -> Edge:
        """The edge from `source` to `target` (node ids)."""
        for edge in self.edges:
            if edge.source == source and edge.target == target:
                return edge
        raise KeyError(f"no edge {source} -> {target} in step {self.step}")

    def with_step(self, step: int) -> Snapshot:
        """The same graph numbered as another step."""
        return replace(self, step=step)

    @property
    def graph(self) -> nx.DiGraph:
        """A fresh networkx DiGraph view; node and edge attributes as in the JSON."""
        return node_link_graph(to_node_link(self))

    def to_json(self) -> str:
        """Compact node-link JSON, deterministic: sorted keys, walk order, strict floats."""
        return node_link_json(self) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        """Read a snapshot written by `to_json`."""
        return from_node_link(json.loads(text))

    @functools.cached_property
    def _edges_in(self) -> dict[str, list[Edge]]:
        """Node id -> the edges into it, in edge order (built once)."""
        edges_in: dict[str, list[Edge]] = {node.id: [] for node in self.nodes}
        for edge in self.edges:
            edges_in[edge.target].append(edge)
        return edges_in

    @functools.cached_property
    def _edges_out(self) -> dict[str, list[Edge]]:
        """Node id -> the edges out of it, in edge order (built once)."""
        edges_out: dict[str, list[Edge]] = {node.id: [] for node in self.nodes}
        for edge in self.edges:
            edges_out[edge.source].append(edge)
        return edges_out

    @functools.cached_property
    def _inputs(self) -> dict[str, list[str]]:
        """Node id -> the ids of the nodes it was computed from (built once)."""
        return {node_id: [e.source for e in edges] for node_id, edges in self._edges_in.items()}

    @functools.cached_property
    def _users(self) -> dict[str, list[str]]:
        """Node id -> the ids of the nodes its output flows into (built once)."""
        return {node_id: [e.target for e in edges] for node_id, edges in self._edges_out.items()}

    def edges_in(self, node_id: str) -> list[Edge]:
        """The edges into `node_id`, in edge order."""
        return self._edges_in[node_id]

    def edges_out(self, node_id: str) -> list[Edge]:
        """The edges out of `node_id`, in edge order."""
        return self._edges_out[node_id]

    def inputs_of(self, node_id: str) -> list[str]:
        """The ids of the nodes `node_id` was computed from (forward edges into it)."""
        return self._inputs[node_id]

    def users_of(self, node_id: str) -> list[str]:
        """The ids of the nodes that use the output of `node_id` (forward edges out of it)."""
        return self._users[node_id]


def to_node_link(snapshot: Snapshot) -> dict[str, Any]:
    """networkx node-link data (`edges` key) for a snapshot; `loss_scale` only when a
    GradScaler scaled the step's loss (its gradients are stored as computed, scaled), and
    `gradients` only when the step recorded the leaves' gradients alone ("leaves")."""
    return {
        "directed": True,
        "edges": [_edge_to_dict(edge) for edge in snapshot.edges],
        "graph": _graph_to_dict(snapshot),
        "multigraph": False,
        "nodes": [_node_to_dict(node) for node in snapshot.nodes],
    }


def _graph_to_dict(snapshot: Snapshot) -> dict[str, Any]:
    """The node-link data's graph attributes, in sorted order."""
    graph: dict[str, Any] = {"call": snapshot.call, "format": JSON_FORMAT_VERSION}
    if snapshot.gradients != "full":
        graph["gradients"] = snapshot.gradients
    if snapshot.loss_scale is not None:
        graph["loss_scale"] = snapshot.loss_scale
    graph.update(notes=list(snapshot.notes), step=snapshot.step)
    return graph


def _edge_to_dict(edge: Edge) -> dict[str, Any]:
    """An edge as node-link data, in sorted order."""
    return {"grad": None if edge.grad is None else edge.grad.to_dict(), "source": edge.source, "target": edge.target}


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_quote = json.encoder.encode_basestring  # the quoting that encoder uses for strings
_EDGE_WITHOUT_GRAD = '{"grad":null,"source":%s,"target":%s}'


def node_link_json(snapshot: Snapshot) -> str:
    """`compact_json(to_node_link(snapshot))`, without sorting: every dict of the node-link
    data is built in sorted key order, and an edge without a gradient is filled into its
    text: a graph of a million nodes is encoded faster."""
    edges = ",".join([_EDGE_WITHOUT_GRAD % (_quote(edge.source), _quote(edge.target)) if edge.grad is None
                      else _encode(_edge_to_dict(edge)) for edge in snapshot.edges])
    return (f'{{"directed":true,"edges":[{edges}],"graph":{_encode(_graph_to_dict(snapshot))},'
            f'"multigraph":false,"nodes":{_encode([_node_to_dict(node) for node in snapshot.nodes])}}}')


def from_node_link(data: Mapping[str, Any]) -> Snapshot:
    """Inverse of `to_node_link`."""
    graph = data.get("graph", {})
    return Snapshot(
        nodes=tuple(_node_from_dict(node) for node in data["nodes"]),
        edges=tuple(
            Edge(edge["source"], edge["target"], GradStat.from_dict(edge.get("grad")))
            for edge in data["edges"]
        ),
        step=int(graph.get("step", 0)),
        call=str(graph.get("call", "backward")),
        notes=tuple(graph.get("notes", ())),
        loss_scale=graph.get("loss_scale"),
        gradients=str(graph.get("gradients", "full")),
    )


def node_link_graph(data: Mapping[str, Any]) -> nx.DiGraph:
    """Build a networkx DiGraph from node-link data, keeping walk order (networkx is
    imported here: it costs a tenth of a second, and most runs never build a DiGraph)."""
    import networkx as nx

    return nx.node_link_graph(data, directed=True, multigraph=False, edges="edges")
