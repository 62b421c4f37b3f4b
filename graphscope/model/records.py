"""The records a captured graph is made of: node kinds, gradient statistics, nodes and edges
(tuples: small and fast), and the deterministic JSON rule every file follows."""

from __future__ import annotations

import contextlib
import enum
import functools
import gc
import json
import math
import re
from typing import Any, Iterator, Mapping, NamedTuple


JSON_FORMAT_VERSION = 1


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


# One encoder for every call (a long run encodes a line a step); what it encodes is plain
# data made for it, never a cycle, so it does not look for one.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False)


def compact_json(value: Any) -> str:
    """Deterministic compact JSON, as every file graphscope writes has it: sorted keys, no
    spaces, UTF-8 as is."""
    return _ENCODER.encode(value)


class NodeKind(str, enum.Enum):
    """What a node of the graph stands for."""

    OUTPUT = "output"
    FUNCTION = "function"
    MODULE = "module"
    LEAF = "leaf"
    TENSOR = "tensor"
    SAVED = "saved"
    COMPILED = "compiled"

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
        high, mean, low, norm = self.max, self.mean, self.min, self.norm
        if not math.isfinite(high + mean + low + norm):  # finite only when each of them is
            high, mean, low, norm = map(_json_float, (high, mean, low, norm))
        data: dict[str, Any] = {  # in sorted key order: node-link JSON is encoded without sorting
            "max": high, "mean": mean, "min": low, "nonfinite": self.nonfinite, "norm": norm,
            "numel": self.numel, "shape": list(self.shape),
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
    """One node of a captured graph: a backward function or a tensor (a tuple: small and fast).

    Besides the tensor's own attributes (`shape, dtype, device, is_leaf, requires_grad,
    retains_grad`) and its gradients (`grad`: `.grad` after the call; `grad_step`: what this
    call contributed):

    - `first_step`: the step the node was made in, as far as graphscope can tell: the step
      whose forward pass created it when sources were tracked, else the first step that
      captured it.
    - `origin`: where graphscope first captured the node, `(step, number)` (its place in that
      step's walk; `(step, number, output)` for a tensor node), the same in every step of a
      run: the node's identity across steps.
    - `calls`: the module calls the op ran inside, outermost first, as `(depth, call)` pairs
      (the depth of that call's module path in dotted components, the call's number in the run).
    - `saved_bytes`: bytes of the tensors the function saved for backward (numel x element
      size, summed), counted when captured; memory another function of the same capture
      saved is counted once, at the first in walk order; 0 once a backward freed them.
    - `region`, `inner_ops`, `inner`: for a `compiled` node, the compiled module or function,
      the number of ops in its backward graph, and that graph as node-link data.
    """

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
    origin: tuple[int, ...] | None = None
    calls: tuple[tuple[int, int], ...] | None = None
    saved_bytes: int | None = None
    region: str | None = None
    inner_ops: int | None = None
    inner: Any = None

    @property
    def is_tensor(self) -> bool:
        """True for nodes that stand for a tensor rather than a function, a module or a region."""
        return self.kind in _TENSOR_KINDS

    def carried_over(self, step: int) -> bool:
        """True for history dragged along from an earlier step (leaves are shared by design)."""
        return self.first_step is not None and self.first_step < step and self.kind is not NodeKind.LEAF

    @property
    def title(self) -> str:
        """Short human name: the user's name, else the op, else the id."""
        return self.name or self.op or self.id


_TENSOR_KINDS = frozenset((NodeKind.OUTPUT, NodeKind.LEAF, NodeKind.TENSOR, NodeKind.SAVED))


_FROM_STEP = re.compile(r" \(from step \d+\)$")


@functools.lru_cache(maxsize=1 << 16)
def base_name(name: str | None) -> str | None:
    """The variable name of a tensor, without the ` (from step N)` a later step adds to the name
    it had in an earlier one."""
    return None if name is None else _FROM_STEP.sub("", name)


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
