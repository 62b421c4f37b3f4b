"""Gradient statistics, computed for many tensors at once on their own device.

Small gradients are concatenated and reduced by segment, large ones by PyTorch's
multi-tensor (`_foreach`) kernels; the results of all gradients on one device come back in
one transfer, and NaN/Inf are counted only in the rare gradients whose norm is not finite:
a backward with thousands of edges costs a few passes over its gradients instead of several
tiny ops and a transfer per edge.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from graphscope.model import GradStat

SMALL_TENSOR = 64
SEGMENTED = 1 << 10


_READY = (torch.float32, torch.float64)


def _flat(grad: torch.Tensor) -> torch.Tensor:
    """The values of a gradient as a vector of float32 or float64 (sparse: the stored values,
    the others being zeros; complex: magnitudes). Called under no_grad."""
    if grad.layout is torch.strided and grad.dtype in _READY:
        return grad.reshape(-1)
    values = grad
    if values.is_sparse:
        values = values.coalesce().values()
    if values.is_complex():
        values = values.abs()
    if values.dtype != torch.float64:
        values = values.to(torch.float32)
    return values.reshape(-1)


def _is_small(grad: torch.Tensor) -> bool:
    """Dense gradients of at most SMALL_TENSOR elements keep all their values."""
    return grad.numel() <= SMALL_TENSOR and not grad.is_sparse


def _empty(grad: torch.Tensor) -> GradStat:
    """Statistics of a gradient with no elements."""
    nan = float("nan")
    return GradStat(tuple(grad.shape), grad.numel(), 0.0, nan, nan, nan, 0, ())


def _maxima(flats: list[torch.Tensor]) -> list[torch.Tensor]:
    """Largest value of each vector, with the multi-tensor kernel where PyTorch has it."""
    if hasattr(torch, "_foreach_max"):
        return list(torch._foreach_max(flats))
    return [f.amax() for f in flats]


def _nonfinite_counts(flats: list[torch.Tensor], norms: list[float]) -> list[int]:
    """NaN/Inf count of each vector; only those with a non-finite norm can have any."""
    suspect = [i for i, norm in enumerate(norms) if not math.isfinite(norm)]
    counts = [0] * len(flats)
    if suspect:
        found = torch.stack([(~torch.isfinite(flats[i])).sum() for i in suspect]).tolist()
        for i, count in zip(suspect, found):
            counts[i] = int(count)
    return counts


def _column(values: Sequence[torch.Tensor]) -> torch.Tensor:
    """0-d results stacked into one float64 vector (one conversion when they share a dtype)."""
    if len({v.dtype for v in values}) == 1:
        return torch.stack(list(values)).to(torch.float64)
    return torch.stack([v.to(torch.float64) for v in values])


def _kernel_summary(flats: list[torch.Tensor]) -> torch.Tensor:
    """Norm, sum, min and max of large vectors, by multi-tensor kernels that copy nothing."""
    columns = [torch._foreach_norm(flats), [f.sum() for f in flats], [f.amin() for f in flats], _maxima(flats)]
    return torch.stack([_column(column) for column in columns], dim=1)


def _segment_summary(flats: list[torch.Tensor]) -> torch.Tensor:
    """Norm, sum, min and max of small vectors, from one float64 concatenation: a handful of
    kernels for any number of vectors, where a kernel per vector would cost more than the data."""
    values = torch.cat(flats).to(torch.float64)
    lengths = torch.tensor([f.numel() for f in flats], device=values.device)

    def reduce(data: torch.Tensor, how: str) -> torch.Tensor:
        return torch.segment_reduce(data, how, lengths=lengths)

    return torch.stack([reduce(values.square(), "sum").sqrt(), reduce(values, "sum"),
                        reduce(values, "min"), reduce(values, "max")], dim=1)


def _summaries(flats: list[torch.Tensor]) -> torch.Tensor:
    """One float64 row (norm, sum, min, max) per vector; small and large ones batched apart."""
    small = [i for i, f in enumerate(flats) if f.numel() <= SEGMENTED]
    if len(small) == len(flats):
        return _segment_summary(flats)
    large = [i for i, f in enumerate(flats) if f.numel() > SEGMENTED]
    rows = torch.empty((len(flats), 4), dtype=torch.float64, device=flats[0].device)
    if small:
        rows[small] = _segment_summary([flats[i] for i in small])
    rows[large] = _kernel_summary([flats[i] for i in large])
    return rows


def _device_stats(grads: Sequence[torch.Tensor]) -> list[GradStat]:
    """Statistics of non-empty gradients that live on one device."""
    flats = [_flat(g) for g in grads]
    sizes = [g.numel() for g in grads]
    small = [_is_small(g) for g in grads]
    kept = [f for f, keep in zip(flats, small) if keep]
    summary = _summaries(flats).reshape(-1)
    numbers = (torch.cat([summary, torch.cat(kept).to(torch.float64)]) if kept else summary).tolist()
    rows, values, at = numbers[: 4 * len(grads)], numbers, 4 * len(grads)
    counts = _nonfinite_counts(flats, rows[0::4])
    stats = []
    for k, grad in enumerate(grads):
        norm, total, low, high = rows[4 * k: 4 * k + 4]
        own = None
        if small[k]:
            own, at = tuple(values[at: at + sizes[k]]), at + sizes[k]
        if flats[k].numel() < sizes[k]:
            low, high = min(low, 0.0), max(high, 0.0)
        stats.append(GradStat(tuple(grad.shape), sizes[k], norm, total / sizes[k], low, high, counts[k], own))
    return stats


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
            elif _flat_size(grad) == 0:
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
    if grad.layout is not torch.strided:
        return (id(grad),)
    return grad.data_ptr(), grad.shape, grad.stride(), grad.dtype, grad.device


def _flat_size(grad: torch.Tensor) -> int:
    """Number of stored values (a sparse gradient may store none)."""
    return grad._nnz() if grad.is_sparse else grad.numel()
