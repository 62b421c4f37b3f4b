"""Gradient statistics, computed for many tensors at once on their own device.

A small dense float gradient on the CPU (up to SMALL_TENSOR finite values, which a snapshot
keeps) is reduced at once in Python from its values: a copy and a batch would cost more.
Dense float gradients of up to SEGMENTED values are stacked by shape and reduced a row per
gradient in float64, the values of the small ones (those a snapshot keeps) coming back
with them; of the others, small ones come back in one concatenation and are reduced in
Python, and the rest are reduced where they live: those of up to SEGMENTED values by
segment from one float64 concatenation, larger ones by PyTorch's multi-tensor (`_foreach`)
kernels. NaN/Inf are counted only in the rare gradients whose norm is not finite. A
backward with thousands of edges, or a queue of a thousand steps of a training loop, costs
a few passes over its gradients instead of several tiny ops and a transfer per gradient.
"""

from __future__ import annotations

import itertools
import math
from array import array
from typing import Any, Sequence

import torch

from graphscope.model import GradStat

SMALL_TENSOR = 64
SEGMENTED = 1 << 10
FLUSH_ELEMENTS = 1 << 23
FLUSH_TENSORS = 1 << 12
CPU_FLUSH_TENSORS = 1 << 8

_READY = (torch.float32, torch.float64)
_STRIDED = torch.strided
_new_stat = tuple.__new__  # a GradStat made by a C call: a step makes dozens
_flatten = torch._C._nn.flatten_dense_tensors  # one concatenation of whole tensors, in C++


def _values(grad: torch.Tensor) -> torch.Tensor:
    """The values a gradient's statistics are taken over: a dense float32 or float64
    gradient as it is, others as a float vector (sparse: the stored values, the others being
    zeros; complex: magnitudes). Called under no_grad."""
    if grad.layout is _STRIDED and grad.dtype in _READY:
        return grad
    values = grad
    if values.is_sparse:
        values = values.coalesce().values()
    if values.is_complex():
        values = values.abs()
    if values.dtype != torch.float64:
        values = values.to(torch.float32)
    return values.reshape(-1)


def _empty(grad: torch.Tensor) -> GradStat:
    """Statistics of a gradient with no elements."""
    nan = float("nan")
    return GradStat(tuple(grad.shape), grad.numel(), 0.0, nan, nan, nan, 0, ())


def _extremes(values: list[torch.Tensor]) -> torch.Tensor:
    """Smallest and largest value of each of many small tensors as two float64 columns, by
    multi-tensor kernels where PyTorch has them (the minimum as the largest of the negated
    values: a copy, which costs little at this size)."""
    if hasattr(torch, "_foreach_max"):
        return torch.stack([-_column(torch._foreach_max(torch._foreach_neg(values))),
                            _column(torch._foreach_max(values))], dim=1)
    return torch.stack([_column([v.amin() for v in values]), _column([v.amax() for v in values])], dim=1)


def _nonfinite_counts(values: list[torch.Tensor], norms: list[float]) -> list[int]:
    """NaN/Inf count of each tensor; only those with a non-finite norm can have any."""
    suspect = [i for i, norm in enumerate(norms) if not math.isfinite(norm)]
    counts = [0] * len(values)
    if suspect:
        found = torch.stack([(~torch.isfinite(values[i])).sum() for i in suspect]).tolist()
        for i, count in zip(suspect, found):
            counts[i] = int(count)
    return counts


def _column(results: Sequence[torch.Tensor]) -> torch.Tensor:
    """0-d results stacked into one float64 vector (one conversion when they share a dtype)."""
    if len({r.dtype for r in results}) == 1:
        return torch.stack(list(results)).to(torch.float64)
    return torch.stack([r.to(torch.float64) for r in results])


def _kernel_summary(values: list[torch.Tensor]) -> torch.Tensor:
    """Norm, sum, min and max of large tensors, by kernels that copy nothing (min and max
    in one pass each)."""
    extremes = [torch.aminmax(v) for v in values]
    return torch.stack([_column(torch._foreach_norm(values)), _column([v.sum() for v in values]),
                        _column([low for low, _ in extremes]), _column([high for _, high in extremes])], dim=1)


def _segment_summary(joined: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Norm and sum of consecutive pieces of one float64 vector: two kernels for any number
    of gradients, where a kernel per gradient would cost more than the data."""
    lengths = torch.tensor(sizes, device=joined.device)
    return torch.stack([torch.segment_reduce(joined.square(), "sum", lengths=lengths).sqrt(),
                        torch.segment_reduce(joined, "sum", lengths=lengths)], dim=1)


def _kept_row(values: tuple[float, ...]) -> list[float] | None:
    """Norm, sum, min and max of a small gradient's finite values, in Python from the values
    already copied out (None when one is not finite: then PyTorch's kernels decide)."""
    if not all(map(math.isfinite, values)):
        return None
    return [math.hypot(*values), sum(values), min(values), max(values)]


def _kept_values(values: list[torch.Tensor], kept: list[int], sizes: list[int]) -> dict[int, tuple[float, ...]]:
    """The values of the small gradients at positions `kept`, copied out in one float64
    concatenation."""
    copied = _flatten([values[k] for k in kept]).to(torch.float64).tolist()
    own, at = {}, 0
    for k in kept:
        own[k], at = tuple(copied[at: at + sizes[k]]), at + sizes[k]
    return own


def _small_cpu_stat(grad: torch.Tensor) -> GradStat | None:
    """Statistics of a dense float CPU gradient of 1 to SMALL_TENSOR finite values, reduced
    in Python's float64 from its values (which a snapshot keeps; the norm by `math.hypot`,
    which neither overflows nor underflows where squaring would); None for any other."""
    size = grad.numel()
    if not 0 < size <= SMALL_TENSOR or grad.layout is not _STRIDED or grad.dtype not in _READY:
        return None
    listed = grad.tolist() if grad.dim() < 2 else grad.reshape(-1).tolist()
    values = tuple(listed) if grad.dim() else (listed,)
    row = _kept_row(values)
    if row is None:
        return None
    norm, total, low, high = row
    return _new_stat(GradStat, (tuple(grad.shape), size, norm, total / size, low, high, 0, values))


def _device_stats(grads: Sequence[torch.Tensor]) -> list[GradStat]:
    """Statistics of non-empty gradients that live on one device: dense float ones of up to
    SEGMENTED values by stacks of one shape (see `_grouped_rows`); of the rest, the values
    of small ones are copied out in one float64 concatenation and reduced in Python, the
    others reduced on the device, those of up to SEGMENTED values by segment from one
    concatenation, larger ones by multi-tensor kernels."""
    values = [_values(g) for g in grads]
    stored = [v.numel() for v in values]
    sizes = [g.numel() for g in grads]
    rows, own = _grouped_rows(grads, sizes)
    kept = [k for k, (grad, size) in enumerate(zip(grads, sizes))
            if rows[k] is None and size <= SMALL_TENSOR and not grad.is_sparse]
    own.update(_kept_values(values, kept, sizes) if kept else {})
    for k in kept:
        rows[k] = _kept_row(own[k])
    reduced = [k for k in range(len(grads)) if rows[k] is None]
    if reduced:
        for k, row in zip(reduced, _reduced_rows([values[k] for k in reduced], [stored[k] for k in reduced])):
            rows[k] = row
    counts = _nonfinite_counts(values, [row[0] for row in rows])
    stats = []
    for k, grad in enumerate(grads):
        norm, total, low, high = rows[k]
        if stored[k] < sizes[k]:
            low, high = min(low, 0.0), max(high, 0.0)
        stats.append(_new_stat(GradStat, (tuple(grad.shape), sizes[k], norm, total / sizes[k], low, high,
                                          counts[k], own.get(k))))
    return stats


def _grouped_rows(grads: Sequence[torch.Tensor], sizes: list[int]) -> tuple[list, dict[int, tuple[float, ...]]]:
    """Norm, sum, min and max of the dense float gradients of up to SEGMENTED values, reduced
    a row per gradient from one stack per shape (a training loop queues the same few shapes
    every step: a few kernels for thousands of gradients), and the values of the small ones;
    None rows for the others. Every number comes back in two transfers."""
    groups: dict[tuple, list[int]] = {}
    for k, grad in enumerate(grads):
        if grad.layout is _STRIDED and grad.dtype in _READY and sizes[k] <= SEGMENTED:
            groups.setdefault((grad.shape, grad.dtype), []).append(k)
    rows: list = [None] * len(grads)
    if not groups:
        return rows, {}
    order, summaries, small, kept = [], [], [], []
    for members in groups.values():
        stacked = torch.stack([grads[k] for k in members]).reshape(len(members), -1).to(torch.float64)
        summaries.append(torch.stack([stacked.square().sum(1).sqrt(), stacked.sum(1), stacked.amin(1),
                                      stacked.amax(1)], dim=1))
        order += members
        if sizes[members[0]] <= SMALL_TENSOR:
            small.append(stacked)
            kept += members
    for k, row in zip(order, torch.cat(summaries).tolist()):
        rows[k] = row
    own, at = {}, 0
    copied = torch.cat([part.reshape(-1) for part in small]).tolist() if small else []
    for k in kept:
        own[k], at = tuple(copied[at: at + sizes[k]]), at + sizes[k]
    return rows, own


def _reduced_rows(values: list[torch.Tensor], stored: list[int]) -> list[list[float]]:
    """Norm, sum, min and max of each tensor, reduced on its device (see `_device_stats`)."""
    segmented = [k for k, size in enumerate(stored) if size <= SEGMENTED]
    large = [k for k, size in enumerate(stored) if size > SEGMENTED]
    order = segmented + large
    parts = []
    if segmented:
        joined = _flatten([values[k] for k in segmented]).to(torch.float64)
        extremes = _extremes([values[k] for k in segmented])
        parts.append(torch.cat([_segment_summary(joined, [stored[k] for k in segmented]), extremes], dim=1))
    if large:
        parts.append(_kernel_summary([values[k] for k in large]))
    numbers = torch.cat(parts).tolist()
    rows: list = [None] * len(values)
    for k, row in zip(order, numbers):
        rows[k] = row
    return rows


def grad_stats(grads: Sequence[torch.Tensor | None]) -> list[GradStat | None]:
    """Statistics of each gradient (None stays None), batched per device; a gradient that
    is the same data as an earlier one (a leaf's `.grad` is often the very tensor its
    consumers sent) is reduced once."""
    result: list[GradStat | None] = [None] * len(grads)
    by_device: dict[torch.device, list[int]] = {}
    first_of: dict[tuple, int] = {}
    same_as: list[tuple[int, int]] = []
    with torch.no_grad(), torch._C.DisableTorchFunction():
        for i, grad in enumerate(grads):
            if grad is None:
                continue
            seen = first_of.setdefault(_same_data(grad), i)
            if seen != i:
                same_as.append((i, seen))
            elif _stored_size(grad) == 0:
                result[i] = _empty(grad)
            else:
                by_device.setdefault(grad.device, []).append(i)
        for positions in by_device.values():
            for i, stat in zip(positions, _device_stats([grads[i] for i in positions])):
                result[i] = stat
    for i, seen in same_as:
        result[i] = result[seen]
    return result


def _same_data(grad: torch.Tensor) -> tuple:
    """What makes two dense gradients hold the same values: the same memory, read the same
    way (only within one batch; other layouts are compared as objects)."""
    if grad.layout is not _STRIDED:
        return (id(grad),)
    return grad.data_ptr(), grad.shape, grad.stride(), grad.dtype, grad.device


def _stored_size(grad: torch.Tensor) -> int:
    """Number of stored values (a sparse gradient may store none)."""
    return grad._nnz() if grad.is_sparse else grad.numel()


class KeptStats:
    """Gradient statistics by number, held as columns of numbers: a long loop keeps several a
    step, and records (or tuples) would each be one more object for the garbage collector to
    count and scan until it stops tracking them. Read back as the GradStat they were."""

    def __init__(self) -> None:
        self.rows: dict[int, int] = {}  # number: row, or -1 for no gradient
        self.shapes: list[tuple[int, ...]] = []
        self.shape_rows: dict[tuple[int, ...], int] = {}
        self.shape_at = array("q")
        self.counts = array("q")  # numel, nonfinite
        self.floats = array("d")  # norm, mean, min, max
        self.spans = array("q")  # start and length of the values kept (length -1: none)
        self.values = array("d")

    def __setitem__(self, number: int, stat: GradStat | None) -> None:
        if stat is None:
            self.rows[number] = -1
            return
        self.rows[number] = len(self.shape_at)
        shape = self.shape_rows.get(stat.shape)
        if shape is None:
            shape = self.shape_rows[stat.shape] = len(self.shapes)
            self.shapes.append(stat.shape)
        self.shape_at.append(shape)
        self.counts.extend((stat.numel, stat.nonfinite))
        self.floats.extend((stat.norm, stat.mean, stat.min, stat.max))
        self.spans.extend((len(self.values), -1 if stat.values is None else len(stat.values)))
        if stat.values is not None:
            self.values.extend(stat.values)

    def __getitem__(self, number: int) -> GradStat | None:
        row = self.rows[number]
        if row < 0:
            return None
        start, length = self.spans[2 * row: 2 * row + 2]
        return _new_stat(GradStat, (self.shapes[self.shape_at[row]], self.counts[2 * row],
                                    *self.floats[4 * row: 4 * row + 4], self.counts[2 * row + 1],
                                    None if length < 0 else tuple(self.values[start: start + length])))


class StatsQueue:
    """Gradients waiting for their statistics, computed in batches across steps: on their own
    device, with one transfer per batch, so a recording adds no device synchronisation per
    step and pays the kernels' fixed cost once per batch. Each result goes to `store[key]`.
    The queue holds at most FLUSH_ELEMENTS values (or FLUSH_TENSORS tensors) before it
    computes them; only CPU_FLUSH_TENSORS while they all live on the CPU, where no batch
    waits for a device: there a smaller batch costs less per gradient, and its copies are
    freed before the garbage collector moves them to its oldest generation."""

    def __init__(self) -> None:
        self.entries: list[tuple[Any, Any, torch.Tensor]] = []
        self.elements = 0
        self.limit = CPU_FLUSH_TENSORS
        self.kept = KeptStats()
        self.numbers = itertools.count()  # next() is atomic: leaf hooks run on one thread per device

    def put(self, store: dict | KeptStats, key: Any, grad: torch.Tensor | None, copy: bool = False) -> None:
        """Queue one gradient; `copy` it when its memory may change before the batch is computed
        (a leaf's `.grad`, which the next backward adds to in place). A small finite one on the
        CPU has its statistics at once, from its values read now: no copy, no batch to wait for."""
        if grad is None:
            store[key] = None
            return
        grad = grad.detach() if grad.requires_grad else grad
        if grad.is_cpu:
            stat = _small_cpu_stat(grad)
            if stat is not None:
                store[key] = stat
                return
        self.entries.append((store, key, grad.clone() if copy else grad))
        self.elements += grad.numel()
        if not grad.is_cpu:
            self.limit = FLUSH_TENSORS
        if self.elements > FLUSH_ELEMENTS or len(self.entries) > self.limit:
            self.flush()

    def keep(self, grad: torch.Tensor | None, copy: bool = False) -> int:
        """Queue one gradient whose statistics the queue keeps itself (see KeptStats): where
        they will be, for `kept_stat`."""
        index = next(self.numbers)
        self.kept[index] = None
        self.put(self.kept, index, grad, copy)
        return index

    def kept_stat(self, index: int) -> GradStat | None:
        """The statistics `keep` queued at `index` (computed by a `flush` first)."""
        return self.kept[index]

    def flush(self) -> None:
        """Compute every queued gradient's statistics, in one batch."""
        if not self.entries:
            return
        entries, self.entries, self.elements, self.limit = self.entries, [], 0, CPU_FLUSH_TENSORS
        for (store, key, _), stat in zip(entries, grad_stats([grad for _, _, grad in entries])):
            store[key] = stat
