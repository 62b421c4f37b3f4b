"""Tensors saved for backward: read from each function as `saved` nodes, and whether a
backward already freed them (PyTorch names none of them in its error)."""

from __future__ import annotations

import functools
from typing import Any

import torch

from graphscope.capture.pending import tensor_fields
from graphscope.model import Node, NodeKind


def attach_saved(builder: Any) -> None:
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
                    walk.nodes[node] = walk.nodes[node]._replace(saved_freed=True, saved_bytes=0)
                continue
            for label, tensor in _saved_tensors(attr.removeprefix("_saved_"), value):
                saved = walk.place(Node(
                    builder.next_id("saved"), NodeKind.SAVED, label, builder.names.name_of(tensor),
                    **tensor_fields(tensor),
                ))
                walk.edges.append((saved, node))
        freed += bool(walk.nodes[node].saved_freed)
    if freed:
        walk.notes.append(
            f"saved tensors of {freed} function(s) were already freed: a backward ran through "
            "this graph without retain_graph=True"
        )


def saved_bytes(fn: Any, counted: set[tuple[int, int]] | None = None) -> int:
    """Bytes of the tensors `fn` saved for backward (numel x element size, summed); 0 when it
    saved none or a backward freed them. Memory that `counted` (where and how long, in memory
    only) already holds was counted for another function of the same capture: a tanh's
    result that the next layer's addmm saves too is one tensor, held once."""
    total = 0
    counted = set() if counted is None else counted
    for attr in _saved_attributes(fn):
        try:
            value = getattr(fn, attr)
        except RuntimeError:
            return 0
        if value is None:  # most ops save some of their inputs only
            continue
        tensors = (value,) if isinstance(value, torch.Tensor) else [t for _, t in _saved_tensors(attr, value)]
        for tensor in tensors:
            size = tensor.numel() * tensor.element_size()
            try:
                place = tensor.data_ptr(), size
            except (RuntimeError, NotImplementedError):  # no storage: nothing to share
                total += size
                continue
            if place not in counted:
                counted.add(place)
                total += size
    return total


def saved_freed(fn: Any) -> bool:
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


def _saved_attributes(fn: Any) -> tuple[str, ...]:
    """Where a function keeps what it saved for backward: one `_saved_<name>` attribute per
    saved value for PyTorch's own ops, `saved_tensors` for a custom autograd.Function (what
    its forward passed to ctx.save_for_backward)."""
    return _attributes_of(type(fn))


@functools.cache
def _attributes_of(kind: type) -> tuple[str, ...]:
    """The saved-value attributes of one class of backward function (looked up once)."""
    if issubclass(kind, torch.autograd.function.BackwardCFunction):
        return ("saved_tensors",)
    return tuple(a for a in dir(kind) if a.startswith("_saved_"))


def _saved_tensors(label: str, value: Any) -> list[tuple[str, torch.Tensor]]:
    """The tensors inside one saved attribute (a tensor or a sequence of tensors)."""
    if isinstance(value, torch.Tensor):
        return [(label, value)]
    if isinstance(value, (list, tuple)):
        return [(f"{label}[{i}]", v) for i, v in enumerate(value) if isinstance(v, torch.Tensor)]
    return []


