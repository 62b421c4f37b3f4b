"""Which steps to draw: `--steps auto|all|0,1,2|-1|every:100`, combined with commas."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from graphscope.errors import GraphscopeError
from graphscope.model import Snapshot

FIRST_STEPS = 3
AUTO_LIMIT = 20


@dataclass(frozen=True)
class Selection:
    """The steps chosen to draw, and a sentence saying why and what was left out."""

    steps: tuple[int, ...]
    reason: str


def _structure(snapshot: Snapshot) -> tuple:
    """What a step looks like, ignoring gradient values: ids, ops and names in walk order, and
    which node feeds which."""
    return (tuple((n.id, n.op, n.name) for n in snapshot.nodes),
            tuple((e.source, e.target) for e in snapshot.edges))


def changed_steps(snapshots: Sequence[Snapshot]) -> list[int]:
    """Positions whose structure differs from the step before (graphs of other sizes differ
    without reading their records; two steps that repeat the graphs of the same two steps as
    an earlier pair did are compared as that pair was)."""
    changed, previous, compared = [], None, {}
    for i, snapshot in enumerate(snapshots):
        if previous is not None and _differs(previous, snapshot, compared):
            changed.append(i)
        previous = snapshot
    return changed


def _differs(before: Snapshot, after: Snapshot, compared: dict[tuple[int, int], bool]) -> bool:
    """True when two steps' structures differ; `compared` remembers the answer for steps that
    repeat the graphs of known steps (Digest.like)."""
    first, second = before.digest(), after.digest()
    if (first.nodes, first.edges) != (second.nodes, second.edges):
        return True
    if first.like is None or second.like is None:
        return _structure(before) != _structure(after)
    pair = (first.like, second.like)
    if pair not in compared:
        compared[pair] = first.like != second.like and _structure(before) != _structure(after)
    return compared[pair]


def _spread(items: list[int], count: int) -> list[int]:
    """`count` items evenly spread over `items`, first and last included."""
    if len(items) <= count:
        return items
    if count == 1:
        return [items[-1]]
    return [items[round(k * (len(items) - 1) / (count - 1))] for k in range(count)]


def auto(snapshots: Sequence[Snapshot]) -> Selection:
    """The first steps, the last one, and steps whose structure changed, at most AUTO_LIMIT."""
    total = len(snapshots)
    fixed = sorted(set(range(min(FIRST_STEPS, total))) | ({total - 1} if total else set()))
    changed = [i for i in changed_steps(snapshots) if i not in fixed]
    room = max(AUTO_LIMIT - len(fixed), 0)
    chosen = sorted(set(fixed) | set(_spread(changed, room)))
    if len(chosen) == total:
        return Selection(tuple(chosen), f"drew every step ({total})")
    reason = f"drew {len(chosen)} of {total} step(s): the first {min(FIRST_STEPS, total)}, the last"
    if changed:
        shown = len(set(chosen) & set(changed))
        reason += f", and {shown} of {len(changed)} where the structure changed"
    return Selection(tuple(chosen), reason + "; --steps all draws every step")


def _parse_part(part: str) -> tuple[str, int]:
    """One comma-separated item of a --steps value: ("auto"|"all", 0), ("every", N) or ("step", N)."""
    if part in ("auto", "all"):
        return part, 0
    if part.startswith("every:"):
        every = part[len("every:"):]
        if not every.isdigit() or int(every) < 1:
            raise GraphscopeError(f"--steps {part!r}: every: takes a positive whole number")
        return "every", int(every)
    try:
        return "step", int(part)
    except ValueError:
        raise GraphscopeError(f"--steps {part!r}: use auto, all, every:N or step numbers "
                              "(negative counts from the end)") from None


@dataclass(frozen=True)
class StepSpec:
    """A --steps value, parsed once (before the script runs, so a typo costs nothing): its
    text and its items, ("auto"|"all", 0), ("every", N) or ("step", N)."""

    text: str
    items: tuple[tuple[str, int], ...]

    @classmethod
    def parse(cls, text: str = "auto") -> StepSpec:
        """Parse `auto`, `all`, `every:N` and step numbers, combined with commas."""
        items = tuple(_parse_part(p.strip()) for p in text.split(",") if p.strip())
        return cls(text, items or (("auto", 0),))

    @property
    def is_auto(self) -> bool:
        """True for the default choice."""
        return self.items == (("auto", 0),)


AUTO = StepSpec("auto", (("auto", 0),))


def _expand(item: tuple[str, int], snapshots: Sequence[Snapshot]) -> list[int]:
    """The step positions one parsed item names."""
    kind, number = item
    total = len(snapshots)
    if kind == "auto":
        return list(auto(snapshots).steps)
    if kind == "all":
        return list(range(total))
    if kind == "every":
        return list(range(0, total, number))
    index = number + total if number < 0 else number
    return [index] if 0 <= index < total else []


def select(spec: StepSpec, snapshots: Sequence[Snapshot]) -> Selection:
    """The steps a --steps value names (positions in the run). A step number the run does not
    have is left out and said in the reason: the run was recorded, and losing it to a typo
    after a long script would be worse."""
    if not snapshots:
        return Selection((), "no step to draw")
    if spec.is_auto:
        return auto(snapshots)
    chosen: set[int] = set()
    missing = []
    for kind, number in spec.items:
        named = _expand((kind, number), snapshots)
        chosen.update(named)
        if kind == "step" and not named:
            missing.append(str(number))
    reason = f"drew {len(chosen)} of {len(snapshots)} step(s) (--steps {spec.text})"
    if missing:
        reason += (f"; the run has no step {', '.join(missing)}: its steps are 0 to {len(snapshots) - 1}"
                   " (negative numbers count from the end)")
    return Selection(tuple(sorted(chosen)), reason)
