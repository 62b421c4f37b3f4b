"""Graphs that keep earlier steps' history alive: a state handed from step to step without
detach, tensors kept in a container, a loss summed into a running total."""

from __future__ import annotations

import re
from typing import Iterator

from graphscope.doctor import scriptsource as code
from graphscope.doctor.carried import Carried, backward_steps, carried, made_text, pattern, spanned_steps
from graphscope.doctor.evidence import (Evidence, as_code, failing_snapshot, failure_sentence, names_text, rule,
                                        steps_text)
from graphscope.model import Finding, NodeKind, Snapshot
from graphscope.numbers import size_text

SECOND_TIME = "Trying to backward through the graph a second time"
CHANGED = "modified by an inplace operation"


@rule("graph-growth")
def graph_growth(evidence: Evidence) -> Iterator[Finding]:
    """History carried into new graphs (and the failed backward it leads to), or losses summed up."""
    failed = _failed_on_history(evidence)
    if failed is not None:
        yield failed
    else:
        yield from _carried_history(evidence)
    yield from _kept_losses(evidence)


def failed_on_history(evidence: Evidence) -> tuple[Snapshot, Carried, str] | None:
    """The failed step whose backward ran into history carried by a state or a container: its
    freed saved tensors, or ones an update changed in place since (the failure is the symptom)."""
    for text in (SECOND_TIME, CHANGED):
        snapshot = failing_snapshot(evidence, text)
        if snapshot is None:
            continue
        state = carried(evidence, snapshot)
        if pattern(evidence, snapshot, state) in ("state", "kept"):
            return snapshot, state, text
    return None


def _failed_on_history(evidence: Evidence) -> Finding | None:
    """The finding that explains a failed backward by the history it ran into."""
    found = failed_on_history(evidence)
    if found is None:
        return None
    snapshot, state, text = found
    symptom = ("whose saved tensors that earlier backward had freed" if text == SECOND_TIME else
               "whose saved tensors were changed in place since (an optimizer step, or an in-place update)")
    message = (_carried_sentence(evidence, snapshot, state) + f" Its backward ran into that history, "
               f"{symptom}.")
    explains = evidence.failure is not None and text in evidence.failure.message
    if explains:
        message += failure_sentence(evidence)
    return Finding("graph-growth", "error", message, _growth_fix(evidence, state),
                   state.lines[0] if state.lines else None, snapshot.step, tuple(n.id for n in state.entries), explains)


def _carried_history(evidence: Evidence) -> Iterator[Finding]:
    """The step carrying the longest history, when it spans at least two earlier steps (the
    history of each step is only counted: the one chosen is the one examined)."""
    backward = backward_steps(evidence)
    worst, worst_span = None, 2
    for snapshot in evidence.snapshots:
        span = len(spanned_steps(snapshot, backward))
        if span >= worst_span:
            worst, worst_span = snapshot, span
    if worst is not None:
        worst_state = carried(evidence, worst)
        message = (_carried_sentence(evidence, worst, worst_state) + " Every backward runs through all earlier "
                   "steps again, and memory grows with every step.")
        yield Finding("graph-growth", "error", message, _growth_fix(evidence, worst_state),
                      worst_state.lines[0] if worst_state.lines else None, worst.step,
                      tuple(n.id for n in worst_state.entries))


def _carried_sentence(evidence: Evidence, snapshot: Snapshot, state: Carried) -> str:
    """`step 1's graph still holds the graph of step 0 (498 of 1012 nodes, 1.2 MB saved for
    backward): `hidden`, made at train.py:31, hands each step's history to the next.`"""
    steps = steps_text(list(state.steps)) if state.steps else "earlier steps"
    graph_nodes = sum(n.kind is not NodeKind.SAVED for n in snapshot.nodes)  # as render counts, saved or not
    held = f"{state.nodes} of {graph_nodes} nodes"
    if state.bytes:
        held += f", {size_text(state.bytes)} saved for backward"
    who = names_text(list(state.names)) if state.names else "a tensor"
    made = f", made at {made_text(evidence, snapshot, state.entries[0])}," if state.lines else ""
    if state.kept:
        how = f"{'are' if len(state.names) > 1 else 'is'} kept from step to step, and each holds its step's graph"
    else:
        how = f"{'hand' if len(state.names) > 1 else 'hands'} each step's history to the next"
    graphs = "graphs" if len(state.steps) > 1 else "graph"
    return f"step {snapshot.step}'s graph still holds the {graphs} of {steps} ({held}): {who}{made} {how}."


def _growth_fix(evidence: Evidence, state: Carried) -> str:
    """No grad for a parameter update (its line reads a `.grad`), clear a container, or detach
    the carried state."""
    if any(code.grad_reads(s) for s in map(evidence.statement, state.lines) if s is not None):
        return ("update parameters without recording the update: in place under `with torch.no_grad():`, "
                "so the next step's graph starts from the leaf again.")
    name = state.names[0] if state.names else "state"
    holder = as_code(name.split("[", 1)[0])
    if state.kept:
        return (f"empty `{holder}` once its step's backward has run (`del {holder}[:]`): this step's backward "
                "needs what it holds of this step, not what earlier steps left in it.")
    if re.fullmatch(r"[\w.]+\[\d+\]", name):  # an item of a tuple handed on, as an LSTM's (h, c)
        detach = f"`{holder} = tuple(h.detach() for h in {holder})` (as `repackage_hidden` does)"
    else:
        state_code = as_code(name)
        detach = f"`{state_code} = {state_code}.detach()`"
    return (f"detach what one step hands to the next at the start of each step: {detach}; keep the history "
            "only if you mean to backpropagate through every earlier step.")


def _kept_losses(evidence: Evidence) -> Iterator[Finding]:
    """`total += loss` / `losses.append(loss)` on the tensor a loop calls backward() on."""
    for path, tree in evidence.trees():
        for kept in code.accumulations(tree):
            steps = [s.step for s in evidence.snapshots
                     if any(n.name == kept.tensor for n in s.of_kind(NodeKind.OUTPUT))]
            if len(steps) >= 2:
                yield _kept_loss_finding(evidence, f"{path}:{kept.line}", kept, steps)


def _kept_loss_finding(evidence: Evidence, location: str, kept: code.Accumulation,
                       steps: list[int]) -> Finding:
    """The finding for one accumulation of a loss tensor across steps."""
    verb = "collects" if kept.appends else f"computes `{kept.holder}` from" if kept.fixed else "adds up"
    message = (f"{evidence.at(location)} {verb} the `{kept.tensor}` tensor of every step, and each one "
               f"holds its step's whole graph: `{kept.holder}` keeps the graphs of all {len(steps)} "
               f"captured steps ({steps_text(steps)}) alive, so memory grows with every step.")
    number = f"{kept.tensor}.item()"
    fix = (f"keep a number, not the tensor: `{kept.holder}.append({number})`" if kept.appends
           else f"keep a number, not the tensor: `{kept.fixed}`" if kept.fixed
           else f"keep a number, not the tensor: `{kept.holder} += {number}`")
    fix += f" (or `{kept.tensor}.detach()` to keep a tensor without its graph)."
    return Finding("graph-growth", "warning", message, fix, location, steps[-1])
