"""Stamps taken from a template while stamping is aside, checked from time to time.

A step of a known shape that runs while stamping is aside takes its ops' `file:line` and
module stamps from the step it repeats (see graphscope.capture.echo). The module calls around
them are checked at every step, not the lines of ops made outside any module: a loop that
switches, after a warm-up, to a loss computed at another line makes the same graph. So once
CHECK_AFTER steps of one shape took their stamps, the next step of that shape is stamped
again (after 1, 2, 4, ... steps for the first checks of a shape, so a loop that switches
soon after it steadied is found soon); when its ops were made at other lines or modules than
the template's, the stamps the steps before it took are taken back: those steps say less
(no `file:line`, no names), not something false. Steps still unchecked when the run ends
keep the stamps they took, as their notes say.
"""

from __future__ import annotations

from typing import Sequence

from graphscope.capture.echo import Echo, unfill_walk
from graphscope.capture.walker import Walk
from graphscope.model.history import Partial

CHECK_AFTER = 16  # steps of one shape that take stamps from its template before one is stamped to check them
TAKEN_BACK = ("no file:line for this step's ops: stamping had stepped aside, and the stamps of step {like}, "
              "whose graph has the same shape, were taken back when step {check}, stamped to check them, "
              "was made at other lines")


class TakenStamps:
    """The steps that took their stamps from each template since its last check."""

    def __init__(self) -> None:
        self.pending: dict[int, list[int]] = {}  # template step: positions of the steps
        self.checks: dict[int, int] = {}  # template step: how many checks its shape had
        self.walks: dict[int, tuple[Walk, tuple[int, ...]]] = {}  # position: a full capture and what it filled

    def took(self, template: int, position: int, walk: Walk | None = None, filled: tuple[int, ...] = ()) -> bool:
        """Remember a step that took its stamps from `template` (a full capture: with the
        functions it filled); True when the next step of that shape should be stamped."""
        steps = self.pending.setdefault(template, [])
        steps.append(position)
        if walk is not None:
            self.walks[position] = (walk, filled)
        return check_due(len(steps), self.checks.get(template, 0))

    def settle(self, template: int, like: bool, elsewhere: bool, check: int, partials: Sequence[Partial],
               filled_note: str) -> None:
        """A step of `template`'s shape was stamped (`check`): keep the stamps taken since the
        last check when it was stamped `like` the template, take them back when some op of it
        was stamped `elsewhere`; else (ops made before stamping resumed) wait for the next."""
        if not like and not elsewhere:
            return
        positions = self.pending.pop(template, [])
        if positions:
            self.checks[template] = self.checks.get(template, 0) + 1
        taken = [(position, self.walks.pop(position, None)) for position in positions]
        if like:
            return
        note = TAKEN_BACK.format(like=template, check=check)
        for position, walk in taken:
            _take_back(partials[position], walk, filled_note, note)


def check_due(taken: int, checks: int) -> bool:
    """True when `taken` steps of a shape took their stamps since its last check, and it had
    `checks` checks: the first after 1, 2, 4, ... steps, then every CHECK_AFTER."""
    return taken >= min(CHECK_AFTER, 2 ** checks)


def _take_back(partial: Partial, walk: tuple[Walk, tuple[int, ...]] | None, filled_note: str, note: str) -> None:
    """Drop the stamps one step took (unless its records were read already), and say so."""
    snapshot = partial.snapshot
    build = snapshot.__dict__.get("_build")
    if build is None:
        return
    if walk is not None:
        unfill_walk(walk[0], walk[1], snapshot.step)
    elif isinstance(build, Echo):
        build.take_back()
    else:
        return
    for derived in ("_digest", "stamps_from"):
        snapshot.__dict__.pop(derived, None)
    object.__setattr__(snapshot, "notes", tuple(note if text == filled_note else text for text in snapshot.notes))
