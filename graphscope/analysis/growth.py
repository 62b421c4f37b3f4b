"""How a run's graphs change size from step to step, and whether they grow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from graphscope.model import NodeKind, Snapshot


@dataclass(frozen=True)
class GrowthRow:
    """Size of one step's graph, how much of it was carried over from earlier steps, and the
    bytes the carried functions hold saved for backward (as counted when captured; None when
    some were captured without counting, as a steady loop's echo steps capture them)."""

    step: int
    nodes: int
    edges: int
    carried: int
    leaves: int
    held: int | None = 0


def growth_row(snapshot: Snapshot) -> GrowthRow:
    """The row of one step, counted once per snapshot (the summary, the doctor and the report
    each ask for every step's row)."""
    row = snapshot.__dict__.get("_growth_row")
    if row is None:
        row = _count(snapshot)
        snapshot.__dict__["_growth_row"] = row
    return row


def _count(snapshot: Snapshot) -> GrowthRow:
    """Count the nodes, edges, carried functions and leaves of one step, from its digest."""
    digest = snapshot.digest()
    return GrowthRow(step=snapshot.step, nodes=digest.nodes, edges=digest.edges, carried=digest.carried,
                     leaves=sum(n.kind is NodeKind.LEAF for n in digest.tensors), held=digest.held)


def growth(snapshots: Sequence[Snapshot]) -> list[GrowthRow]:
    """One row per step."""
    return [growth_row(s) for s in snapshots]


def is_growing(rows: Sequence[GrowthRow]) -> bool:
    """True when the graph carries history and ends bigger, and carrying more, than any step of
    the run's first half: a loop whose steps differ in size (an autograd.grad step, then a
    backward through it) repeats its sizes, and does not grow."""
    if len(rows) < 2 or rows[-1].carried == 0:
        return False
    first_half = rows[: len(rows) // 2]
    return rows[-1].nodes > max(r.nodes for r in first_half) and rows[-1].carried > max(r.carried for r in first_half)
