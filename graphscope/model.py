"""The captured model: frozen, plain records that know nothing of torch or Graphviz.

A `Snapshot` is one captured autograd graph (one backward or grad call). Its nodes and
edges are stored in walk order, so everything derived from it is deterministic; the
networkx view and the node-link JSON are built from these records on demand.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import threading
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Sequence

if TYPE_CHECKING:
    import networkx as nx


JSON_FORMAT_VERSION = 1


def compact_json(value: Any) -> str:
    """Deterministic compact JSON, as every file graphscope writes has it: sorted keys, no
    spaces, UTF-8 as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class NodeKind(str, enum.Enum):
    """What a node of the graph stands for."""

    OUTPUT = "output"
    FUNCTION = "function"
    MODULE = "module"
    LEAF = "leaf"
    TENSOR = "tensor"
    SAVED = "saved"

    def __str__(self) -> str:
        return self.value


def _json_float(value: float) -> float | str:
    """Encode a float for strict JSON: non-finite values become strings."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"


def _from_json_float(value: float | str) -> float:
    """Decode a float written by `_json_float`."""
    return float(value)


class GradStat(NamedTuple):
    """Statistics of one gradient tensor, with its values when it is small."""

    shape: tuple[int, ...]
    numel: int
    norm: float
    mean: float
    min: float
    max: float
    nonfinite: int
    values: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; `values` only when present."""
        data: dict[str, Any] = {
            "shape": list(self.shape),
            "numel": self.numel,
            "norm": _json_float(self.norm),
            "mean": _json_float(self.mean),
            "min": _json_float(self.min),
            "max": _json_float(self.max),
            "nonfinite": self.nonfinite,
        }
        if self.values is not None:
            values = self.values
            data["values"] = list(values) if all(map(math.isfinite, values)) else [_json_float(v) for v in values]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> GradStat | None:
        """Inverse of `to_dict`; None stays None."""
        if data is None:
            return None
        values = data.get("values")
        return cls(
            shape=tuple(data["shape"]),
            numel=int(data["numel"]),
            norm=_from_json_float(data["norm"]),
            mean=_from_json_float(data["mean"]),
            min=_from_json_float(data["min"]),
            max=_from_json_float(data["max"]),
            nonfinite=int(data["nonfinite"]),
            values=None if values is None else tuple(_from_json_float(v) for v in values),
        )

    @property
    def scalar(self) -> float | None:
        """The single value of a one-element gradient, else None."""
        if self.values is not None and len(self.values) == 1:
            return self.values[0]
        return None


class Node(NamedTuple):
    """One node of a captured graph: a backward function or a tensor (a tuple: small and fast)."""

    id: str
    kind: NodeKind
    op: str | None = None
    name: str | None = None
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    device: str | None = None
    is_leaf: bool | None = None
    requires_grad: bool | None = None
    retains_grad: bool | None = None
    grad: GradStat | None = None
    grad_step: GradStat | None = None
    saved_freed: bool | None = None
    first_step: int | None = None
    source: str | None = None
    module: str | None = None
    folded: int | None = None

    @property
    def is_tensor(self) -> bool:
        """True for nodes that stand for a tensor rather than a backward function."""
        return self.kind is not NodeKind.FUNCTION

    def carried_over(self, step: int) -> bool:
        """True for history dragged along from an earlier step (leaves are shared by design)."""
        return self.first_step is not None and self.first_step < step and self.kind is not NodeKind.LEAF

    @property
    def title(self) -> str:
        """Short human name: the user's name, else the op, else the id."""
        return self.name or self.op or self.id


def _close(a: float, b: float) -> bool:
    """Equal up to float rounding (the engine and the hooks may sum in another order)."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)


def accumulated(node: Node, call: str = "backward") -> bool:
    """True when `.grad` holds more than this step contributed (gradients were not zeroed);
    never for autograd.grad, which leaves `.grad` alone."""
    grad, step = node.grad, node.grad_step
    if grad is None or step is None or call == "grad":
        return False
    if grad.values is not None and step.values is not None:
        return not all(_close(a, b) for a, b in zip(grad.values, step.values))
    return not (_close(grad.norm, step.norm) and _close(grad.mean, step.mean))


class Edge(NamedTuple):
    """Forward data flow from `source` to `target`, with the gradient that flowed back."""

    source: str
    target: str
    grad: GradStat | None = None


_NODE_FIELDS = Node._fields
_GRAD_FIELDS = ("grad", "grad_step")


def _node_to_dict(node: Node) -> dict[str, Any]:
    """JSON-ready attributes of a node; the stable names of the node-link format."""
    data = node._asdict()
    data["kind"] = node.kind.value
    for name in _GRAD_FIELDS:
        stat = data[name]
        if stat is not None:
            data[name] = stat.to_dict()
    for optional in ("saved_freed", "folded"):
        if data[optional] is None:
            del data[optional]
    return data


def _node_from_dict(data: Mapping[str, Any]) -> Node:
    """Inverse of `_node_to_dict`."""
    values: dict[str, Any] = {k: data.get(k) for k in _NODE_FIELDS}
    values["kind"] = NodeKind(values["kind"])
    if values["shape"] is not None:
        values["shape"] = tuple(values["shape"])
    for name in _GRAD_FIELDS:
        values[name] = GradStat.from_dict(values[name])
    return Node(**values)


@dataclass(frozen=True)
class Snapshot:
    """One captured autograd graph: nodes and edges in walk order plus graph attributes."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    step: int = 0
    call: str = "backward"
    notes: tuple[str, ...] = ()

    @classmethod
    def deferred(cls, build: Callable[[], tuple[tuple[Node, ...], tuple[Edge, ...]]], step: int = 0,
                 call: str = "backward", notes: tuple[str, ...] = ()) -> Snapshot:
        """A Snapshot whose nodes and edges `build()` makes when they are first read: a large
        trace that is only counted, saved or drawn as a view pays for its records once."""
        snapshot = cls.__new__(cls)
        for name, value in (("step", step), ("call", call), ("notes", notes), ("_build", build),
                            ("_building", threading.Lock())):
            object.__setattr__(snapshot, name, value)
        return snapshot

    def __getattr__(self, name: str) -> Any:
        """Build the records of a deferred Snapshot on first access to `nodes` or `edges`
        (once, also when several threads read it at the same time)."""
        building = self.__dict__.get("_building")
        if name in ("nodes", "edges") and building is not None:
            with building:
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
        return {name: self.__dict__[name] for name in ("nodes", "edges", "step", "call", "notes")}

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
        """All nodes of one kind, in walk order."""
        kind = NodeKind(kind)
        return [node for node in self.nodes if node.kind is kind]

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
        return compact_json(to_node_link(self)) + "\n"

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
    """networkx node-link data (`edges` key) for a snapshot."""
    return {
        "directed": True,
        "multigraph": False,
        "graph": {
            "call": snapshot.call,
            "format": JSON_FORMAT_VERSION,
            "notes": list(snapshot.notes),
            "step": snapshot.step,
        },
        "nodes": [_node_to_dict(node) for node in snapshot.nodes],
        "edges": [
            {
                "source": edge.source,
                "target": edge.target,
                "grad": None if edge.grad is None else edge.grad.to_dict(),
            }
            for edge in snapshot.edges
        ],
    }


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
    )


def node_link_graph(data: Mapping[str, Any]) -> nx.DiGraph:
    """Build a networkx DiGraph from node-link data, keeping walk order (networkx is
    imported here: it costs a tenth of a second, and most runs never build a DiGraph)."""
    import networkx as nx

    return nx.node_link_graph(data, directed=True, multigraph=False, edges="edges")


SEVERITIES = ("info", "warning", "error")


@dataclass(frozen=True)
class Finding:
    """One diagnosed autograd mistake: which rule, how bad, what happened, the fix, and where.

    `severity` is "error", "warning" or "info"; `location` is the user's `file.py:LINE`;
    `nodes` are ids in the snapshot of `step`; `explains_failure` marks the finding that
    says why the script failed.
    """

    rule: str
    severity: str
    message: str
    fix: str
    location: str | None = None
    step: int | None = None
    nodes: tuple[str, ...] = ()
    explains_failure: bool = False

    def __str__(self) -> str:
        where = f" at {self.location}" if self.location else ""
        return f"{self.severity} {self.rule}{where}: {self.message} Fix: {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, the stable field names."""
        return {"rule": self.rule, "severity": self.severity, "message": self.message, "fix": self.fix,
                "location": self.location, "step": self.step, "nodes": list(self.nodes),
                "explains_failure": self.explains_failure}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """Inverse of `to_dict`."""
        return cls(data["rule"], data["severity"], data["message"], data["fix"], data.get("location"),
                   data.get("step"), tuple(data.get("nodes", ())), bool(data.get("explains_failure", False)))


@dataclass(frozen=True)
class Failure:
    """How a script failed: the exception's type and message, and the user line it came from."""

    type: str
    message: str
    location: str | None = None

    @property
    def first_line(self) -> str:
        """`RuntimeError: Trying to backward through the graph a second time`: the first sentence."""
        lines = self.message.strip().splitlines()
        sentence = re.split(r"(?<=\.)\s", lines[0], maxsplit=1)[0] if lines else ""
        sentence = re.sub(r" \([^()]*\)$", "", sentence.rstrip("."))
        if len(sentence) > 100:
            sentence = sentence.split(": ")[0][:100]
        return self.type + (f": {sentence}" if sentence else "")

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


@dataclass(frozen=True)
class Warned:
    """A warning a script triggered, and the user line that triggered it."""

    category: str
    message: str
    location: str | None = None


@dataclass(frozen=True)
class IdleParameter:
    """A parameter an optimizer was about to update while its `.grad` was None."""

    name: str
    requires_grad: bool
    step: int | None
    location: str | None
    times: int = 1
    everything: bool = False


@dataclass
class Run:
    """The steps of one recorded run, live or reloaded, with what the script did and what the
    doctor found in it.

    `status` is the script's exit status and `failure` its exception, if it raised one;
    `warnings` what it warned, `optimizer_steps` after which captured step each
    optimizer.step() ran, `idle_parameters` what an optimizer stepped without a gradient;
    `root` is the folder the steps' `file:line` sources are relative to.
    """

    snapshots: Sequence[Snapshot] = ()
    script: str | None = None
    status: int | None = None
    findings: list[Finding] = field(default_factory=list)
    failure: Failure | None = None
    warnings: tuple[Warned, ...] = ()
    optimizer_steps: tuple[int, ...] = ()
    idle_parameters: tuple[IdleParameter, ...] = ()
    root: str | None = None

    def __len__(self) -> int:
        return len(self.snapshots)

    def __getitem__(self, step: int) -> Snapshot:
        return self.snapshots[step]

    def __str__(self) -> str:
        findings = f", {len(self.findings)} finding(s)" if self.findings else ""
        status = "" if self.status is None else f", exit status {self.status}"
        return f"run of {self.script or 'an unnamed script'}: {len(self)} step(s){status}{findings}"
