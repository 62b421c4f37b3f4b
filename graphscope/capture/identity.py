"""Identity across the steps of one recording: the session's stamp and the leaves it has seen."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from graphscope.capture.history import Key


@dataclass
class LeafRegistry:
    """The leaves one session has captured: a weak reference to each tensor, and the first
    name each was given (with the step), so a later step can show leaves deep in history."""

    tensors: dict[Key, weakref.ref] = field(default_factory=dict)
    first_names: dict[Key, tuple[int, str]] = field(default_factory=dict)

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
    and the session's leaves."""

    key: str
    step: int
    leaves: LeafRegistry = field(default_factory=LeafRegistry)

    @property
    def at_key(self) -> str:
        """Where a node's place in the step that captured it first is kept: (step, function number)."""
        return self.key + ".at"


