"""What a `torch.amp.GradScaler` does while a script runs: the scale each scaled loss was
multiplied by, and whether each update found non-finite gradients and skipped the step.

The scaler's own tensors are copied when it updates and read only once, after the run, so
watching it adds no device synchronisation per step.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch

from graphscope.model import ScalerStep


class ScalerWatch:
    """Wraps GradScaler.update while active; `steps()` reads what it saw."""

    def __init__(self, current_step: Callable[[], int]):
        self.current_step = current_step
        self.seen: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.scaled: set[int] = set()

    def scale(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """GradScaler.scale, noting that the next captured step backpropagates a scaled loss."""

        def scale(scaler: Any, outputs: Any) -> Any:
            if getattr(scaler, "_enabled", False):
                self.scaled.add(self.current_step() + 1)
            return original(scaler, outputs)

        return scale

    def update(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """GradScaler.update, noting the scale in use and the inf checks it consumes."""

        def update(scaler: Any, new_scale: Any = None) -> Any:
            if getattr(scaler, "_enabled", False) and scaler._scale is not None and new_scale is None:
                found = [f for state in scaler._per_optimizer_states.values()
                         for f in state["found_inf_per_device"].values()]
                if found:
                    infs = sum(f.detach().to(scaler._scale.device).sum() for f in found)
                    before = scaler._scale.detach().clone()
                    result = original(scaler, new_scale)
                    self.seen.append((self.current_step(), before, infs, scaler._scale.detach().clone()))
                    return result
            return original(scaler, new_scale)

        return update

    def steps(self) -> tuple[ScalerStep, ...]:
        """Each update: the last captured step before it, its scale, and whether it skipped."""
        return tuple(ScalerStep(step, float(scale), bool(infs > 0), float(after))
                     for step, scale, infs, after in self.seen if step >= 0)

    def scales(self, updates: tuple[ScalerStep, ...]) -> dict[int, float]:
        """The scale each scaled step's loss was multiplied by: the one in use until the next update."""
        found = {}
        for step in sorted(self.scaled):
            update = next((u for u in updates if u.step >= step), None)
            if update is not None:
                found[step] = update.scale
        return found


@contextlib.contextmanager
def watching_scalers(current_step: Callable[[], int]) -> Iterator[ScalerWatch]:
    """Watch every GradScaler's updates for the duration of the block."""
    watch = ScalerWatch(current_step)
    scale, update = torch.amp.GradScaler.scale, torch.amp.GradScaler.update
    torch.amp.GradScaler.scale, torch.amp.GradScaler.update = watch.scale(scale), watch.update(update)
    try:
        yield watch
    finally:
        torch.amp.GradScaler.scale, torch.amp.GradScaler.update = scale, update
