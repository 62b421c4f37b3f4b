"""Gradients summed over steps because nothing zeroed them."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator

from graphscope.doctor.evidence import Evidence, as_code, backward_location, grad_text, names_text, rule
from graphscope.model import Finding, GradStat, Node, NodeKind, Snapshot, accumulated, base_name


def _fresh_backward_steps(evidence: Evidence) -> list[Snapshot]:
    """Backward steps through a new graph (a second backward through the same graph adds on purpose)."""
    return [s for s in evidence.snapshots if s.call == "backward"
            and not any(o.carried_over(s.step) for o in s.of_kind(NodeKind.OUTPUT))]


def _leaf_histories(evidence: Evidence) -> dict[str, list[tuple[Snapshot, Node]]]:
    """Leaf name -> (step, leaf) for every fresh backward step that reached it while a variable
    still held it (a leaf no variable holds, `w (from step 0)`, has a .grad nobody reads)."""
    histories: dict[str, list[tuple[Snapshot, Node]]] = defaultdict(list)
    for snapshot in _fresh_backward_steps(evidence):
        for leaf in snapshot.of_kind(NodeKind.LEAF):
            if leaf.grad is not None and leaf.grad_step is not None and leaf.name == base_name(leaf.name):
                histories[leaf.name or leaf.id].append((snapshot, leaf))
    return histories


def _never_zeroed(evidence: Evidence, history: list[tuple[Snapshot, Node]]) -> bool:
    """True when every step after the first added to `.grad`, no step ever started afresh, and the
    parameters were updated in between (summing several backwards before one update is
    deliberate; carrying the sum past an update is not: micro-batches whose .grad is never
    zeroed after optimizer.step())."""
    pairs = list(zip(history, history[1:]))
    return (bool(pairs) and all(accumulated(leaf) for _, (_, leaf) in pairs)
            and any(evidence.updated_between(before.step, now.step) for (before, _), (now, _) in pairs))


@rule("grad-accumulation")
def grad_accumulation(evidence: Evidence) -> Iterator[Finding]:
    """Leaves whose `.grad` sums every step's gradient because nothing zeroed it in between."""
    groups: dict[tuple[int, ...], list[str]] = defaultdict(list)
    histories = _leaf_histories(evidence)
    for name, history in histories.items():
        if _never_zeroed(evidence, history):
            groups[tuple(s.step for s, _ in history)].append(name)
    for names in groups.values():
        yield _accumulation_finding(evidence, names, [histories[n] for n in names])


def _added_steps(evidence: Evidence, name: str, first: int, last: int) -> list[GradStat]:
    """What each backward step from `first` to `last` added to the leaf `name`, a backward
    through the same graph again included (it adds to `.grad` too)."""
    added = []
    for snapshot in evidence.snapshots:
        if snapshot.call == "backward" and first <= snapshot.step <= last:
            added.extend(leaf.grad_step for leaf in snapshot.of_kind(NodeKind.LEAF)
                         if (leaf.name or leaf.id) == name and leaf.grad_step is not None)
    return added


def _contributions(added: list[GradStat], limit: int = 5) -> str:
    """`-0.5801, -0.5269, -0.4251`: what each step added."""
    parts = [grad_text(stat) for stat in added]
    if len(parts) > limit:
        parts = parts[:limit - 2] + ["…", parts[-1]]
    return ", ".join(parts)


def _accumulation_finding(evidence: Evidence, names: list[str],
                          histories: list[list[tuple[Snapshot, Node]]]) -> Finding:
    """One finding for the leaves that accumulated over the same steps."""
    first = histories[0]
    last_snapshot, last_leaf = first[-1]
    added = _added_steps(evidence, names[0], first[0][0].step, last_snapshot.step)
    grads = names_text([f"{n}.grad" for n in names])
    message = (f"{grads} {'was' if len(names) == 1 else 'were'} never zeroed between steps, so each "
               f"backward() added to the old gradient: after step {last_snapshot.step}, "
               f"{names[0]}.grad is {grad_text(last_leaf.grad)}, the sum of {len(added)} steps' gradients "
               f"({_contributions(added)}), not step {last_snapshot.step}'s own "
               f"{grad_text(last_leaf.grad_step)}.")
    code = as_code(names[0])
    fix = ("zero the gradients once per step before backward(): `optimizer.zero_grad()`, or "
           f"`{code}.grad = None` / `{code}.grad.zero_()`, at the top of the closure for "
           "`optimizer.step(closure)`; to accumulate on purpose, zero every N steps, right after "
           "optimizer.step().")
    nodes = tuple(h[-1][1].id for h in histories)
    return Finding("grad-accumulation", "warning", message, fix, backward_location(evidence, last_snapshot),
                   last_snapshot.step, nodes)
