"""The doctor across the ranks of one torchrun launch: where their graphs differ in structure
at the same step, and each rank's findings told once for every rank that has them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from graphscope.analysis.diff import diff
from graphscope.model import Finding, Node, Run

RANK_DIVERGENCE = "rank-divergence"
_SHOWN = 3


@dataclass(frozen=True)
class RankDifference:
    """How one rank's graph differs from rank 0's at one step: nodes only it has, and nodes
    only rank 0 has, each as `AddmmBackward0 @ train.py:18`."""

    step: int
    rank: int
    added: tuple[str, ...]
    removed: tuple[str, ...]


def _described(node: Node) -> str:
    """`AddmmBackward0 @ train.py:18`, or a leaf by its name."""
    return node.title + (f" @ {node.source}" if node.source else "")


def rank_differences(runs: Mapping[int, Run]) -> list[RankDifference]:
    """Every step at which a rank's graph differs in structure from rank 0's, by step, then rank."""
    if 0 not in runs:
        return []
    found = []
    for rank in sorted(runs)[1:]:
        for ours, theirs in zip(runs[0].snapshots, runs[rank].snapshots):
            change = diff(ours, theirs)
            if not change.empty:
                found.append(RankDifference(ours.step, rank, tuple(_described(theirs[i]) for i in change.added),
                                            tuple(_described(ours[i]) for i in change.removed)))
    return sorted(found, key=lambda d: (d.step, d.rank))


def _listed(items: Sequence[str]) -> str:
    """`a, b, c and 2 more`."""
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def divergence_findings(differences: Sequence[RankDifference]) -> list[Finding]:
    """One finding per rank whose graph differs from rank 0's: at its first such step, with what differs."""
    findings = []
    for rank in sorted({d.rank for d in differences}):
        mine = [d for d in differences if d.rank == rank]
        first = mine[0]
        parts = [f"only rank {rank} has {_listed(first.added)}" if first.added else "",
                 f"only rank 0 has {_listed(first.removed)}" if first.removed else ""]
        steps = ", ".join(str(d.step) for d in mine)
        message = (f"rank {rank} built a different graph than rank 0 at step {first.step} "
                   f"({'; '.join(p for p in parts if p) or 'the same nodes, joined differently'}); "
                   f"they differ at step(s) {steps}. DDP's all-reduce expects every rank to produce the "
                   "same gradients in the same order.")
        fix = ("make every rank take the same branches of the forward pass: branch on values all ranks "
               "share (the step number, a broadcast flag), not on a rank's own batch.")
        findings.append(Finding(RANK_DIVERGENCE, "warning", message, fix, None, first.step))
    return findings


def merged(findings: Mapping[int, Sequence[Finding]]) -> list[Finding]:
    """Each rank's findings, a finding that several ranks share told once, saying on which ranks."""
    ranks_of: dict[Finding, list[int]] = {}
    for rank in sorted(findings):
        for finding in findings[rank]:
            ranks_of.setdefault(finding, []).append(rank)
    result = []
    for finding, ranks in ranks_of.items():
        who = f"rank {ranks[0]}" if len(ranks) == 1 else "ranks " + ", ".join(map(str, ranks))
        result.append(replace(finding, message=f"on {who}: {finding.message}"))
    return result
