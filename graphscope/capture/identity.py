"""Identity across the steps of one recording: the session's stamp and the leaves it has seen."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import NamedTuple

from graphscope.model.history import Key


class StampKeys(NamedTuple):
    """The metadata keys one recording writes on autograd nodes: the step that captured a node
    first, where in that step's walk (`at`), the step it was made in, and its module calls."""

    captured: str

    @property
    def at(self) -> str:
        """Where a node's place in the step that captured it first is kept: (step, function number)."""
        return self.captured + ".at"

    @property
    def made(self) -> str:
        """The step whose forward pass made a node (the number of steps captured before it)."""
        return self.captured + ".made"

    @property
    def calls(self) -> str:
        """The module calls an op ran inside, as (path depth, call number) from the outermost."""
        return self.captured + ".calls"

    @property
    def bytes(self) -> str:
        """The bytes a function saved for backward, counted when it was first captured."""
        return self.captured + ".bytes"

    @property
    def names(self) -> str:
        """The names a node's outputs had when a step captured them: {output: (name, step, tensor fields)}."""
        return self.captured + ".names"


@dataclass
class LeafRegistry:
    """The leaves one session has captured: a weak reference to each tensor, and the first
    name each was given (with the step), so a later step can show leaves deep in history."""

    tensors: dict[Key, weakref.ref] = field(default_factory=dict)
    first_names: dict[Key, tuple[int, str]] = field(default_factory=dict)
    first_steps: dict[int, tuple[weakref.ref, int]] = field(default_factory=dict)  # by id(), in memory only

    def first_step(self, tensor: object, step: int) -> int:
        """The step that first captured this leaf tensor: PyTorch frees a leaf's AccumulateGrad
        with the last graph that used it, so a leaf skipped for a step comes back with a new
        one, which alone would say it was first captured now."""
        found = self.first_steps.get(id(tensor))
        if found is not None and found[0]() is tensor:
            return found[1]
        self.first_steps[id(tensor)] = (weakref.ref(tensor), step)
        return step

    def remember(self, key: Key, given: str | None, step: int) -> None:
        """Keep the name a leaf is given in `step` if it is the first it has had."""
        if given is not None:
            self.first_names.setdefault(key, (step, given))

    def name(self, key: Key, given: str | None, step: int, first_step: int) -> str | None:
        """The name a leaf shows in `step`: the one given now, else its first name, marked
        with the step the leaf comes from."""
        self.remember(key, given, step)
        first = self.first_names.get(key)
        if given is not None or first is None:
            return given
        return f"{first[1]} (from step {first_step})"


@dataclass(frozen=True)
class Stamp:
    """Identity across the steps of one recording: a metadata key unique to it, the step,
    the session's leaves, and whether stamping resumed during the step before (ops made
    unstamped then were made before it, in a step no stamp tells)."""

    key: str
    step: int
    leaves: LeafRegistry = field(default_factory=LeafRegistry)
    resumed: bool = False

    @property
    def keys(self) -> StampKeys:
        """The metadata keys of this recording."""
        return StampKeys(self.key)

    @property
    def at_key(self) -> str:
        """Where a node's place in the step that captured it first is kept: (step, function number)."""
        return self.keys.at


def made_step(metadata: dict, stamp: Stamp) -> int | None:
    """The step a node was made in: stamped when it was made, else the step that captured it
    first, else (not captured yet) this one; None for one made unstamped before stamping
    resumed."""
    made = metadata.get(stamp.keys.made)
    if made is not None:
        return made
    captured = metadata.get(stamp.key, stamp.step)
    return None if stamp.resumed and captured == stamp.step else captured
