"""Which steps a recording captures in full: per-edge gradients cost a hook and statistics
per node, which a training loop that repeats one graph need not pay at every step.

A graph of more than EDGE_GRADIENTS new functions records the leaves' gradients only, at any
step: a hook per function would cost more than the graph itself. Otherwise a step gets full
gradients when its graph has a shape no earlier step had (the first steps
of a loop, and every step where the structure changes), and on a spaced sample (powers of
two and every SPACING-th step); the others record what each leaf received and its `.grad`,
which the doctor's rules about parameters need, and say so (`gradients="leaves"`).
"""

from __future__ import annotations

from typing import Hashable

FIRST_FULL = 3
SPACING = 250
EDGE_GRADIENTS = 100_000
GRADIENT_DETAILS = ("auto", "all")


def sampled(step: int) -> bool:
    """The spaced sample of full steps: the first ones, powers of two, every SPACING-th."""
    return step < FIRST_FULL or step & (step - 1) == 0 or step % SPACING == 0


class Cadence:
    """Remembers each graph shape seen, and the step that first had it."""

    def __init__(self) -> None:
        self.shapes: dict[Hashable, int] = {}

    def full(self, step: int, shape: Hashable) -> bool:
        """Whether `step`, of this shape, is captured with every per-edge gradient."""
        new = shape not in self.shapes
        if new:
            self.shapes[shape] = step
        return new or sampled(step)

    def note(self, shape: Hashable) -> str:
        """What a step of `shape` recorded with leaves only says about it."""
        return leaves_note(self.shapes[shape])


def leaves_note(like: int) -> str:
    """What a step recorded with leaves only says about it, its graph shaped like step `like`'s."""
    return (f"gradients of the leaves only: this step's graph has the shape of step {like}; "
            "every per-edge gradient is recorded at the steps of a new shape and a spaced sample "
            "(--gradients all records them at every step)")


def too_large(functions: int) -> str | None:
    """What a step of `functions` new functions says when it is too large for per-edge gradients."""
    if functions <= EDGE_GRADIENTS:
        return None
    return (f"gradients of the leaves only: this graph has {functions:,} new functions, more than the "
            f"{EDGE_GRADIENTS:,} whose per-edge gradients are recorded by default (--gradients all records them)")
