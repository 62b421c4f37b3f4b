"""Gradients that reach the wrong model: a backward whose gradients land in parameters that the
optimizer stepping next does not update (a GAN's discriminator step on `fake` without detach)."""

from __future__ import annotations

from typing import Iterator

from graphscope.doctor.carried import foreign_parameters, stepping_between
from graphscope.doctor.evidence import Evidence, backward_location, names_text, rule, steps_text
from graphscope.model import Finding, Node, NodeKind, Snapshot, accumulated, base_name


def _reached(snapshot: Snapshot) -> set[str]:
    """The parameters (named leaves requiring grad) this step's backward sent a gradient to."""
    return {base_name(n.name) for n in snapshot.of_kind(NodeKind.LEAF)
            if n.name and n.requires_grad and n.grad_step is not None}


def _behind(snapshot: Snapshot, foreign: set[str], owned: set[str]) -> bool:
    """True when the foreign parameters fed, in the forward pass, the ops that use the owned ones:
    the backward went on past the model being trained into the one that made its input (a
    generator behind a discriminator). The other way round (a discriminator after the
    generator, in the generator's step) the backward must pass through them, and is fine."""
    leaves = {base_name(n.name): n.id for n in snapshot.of_kind(NodeKind.LEAF) if n.name}
    targets = {u for name in owned if name in leaves for u in snapshot.users_of(leaves[name])}
    stack = [leaves[name] for name in foreign if name in leaves]
    seen = set(stack)
    while stack:
        for user in snapshot.users_of(stack.pop()):
            if user in targets:
                return True
            if user not in seen:
                seen.add(user)
                stack.append(user)
    return False


def _behind_once(snapshot: Snapshot, foreign: set[str], owned: set[str],
                 known: dict[tuple, bool]) -> bool:
    """`_behind`, found once for all the steps that repeat one step's graph (Digest.like: the
    same ids, names and edges), so a long loop's records are not made for it."""
    like = snapshot.digest().like
    if like is None:
        return _behind(snapshot, foreign, owned)
    key = (like, frozenset(foreign), frozenset(owned))
    if key not in known:
        known[key] = _behind(snapshot, foreign, owned)
    return known[key]


def _next_use(evidence: Evidence, foreign: set[str], step: int) -> tuple[Snapshot | None, list[Node]]:
    """The next backward after step `step` whose graph holds those parameters, and their
    records there; (None, []) when none does."""
    for later in evidence.snapshots:
        if later.step <= step or later.call != "backward":
            continue
        held = [n for n in later.of_kind(NodeKind.LEAF) if base_name(n.name) in foreign]
        if held:
            return later, held
    return None, []


def _cleared_unapplied(evidence: Evidence, foreign: set[str], step: int) -> bool:
    """True when the next backward to reach those parameters gave each a gradient and found
    in its `.grad` only that (what step `step` sent them was cleared), and no optimizer of
    theirs stepped in between: nothing applied it."""
    later, held = _next_use(evidence, foreign, step)
    if later is None or any(n.grad is None or n.grad_step is None or accumulated(n) for n in held):
        return False
    owners = {o.name for o in evidence.optimizers if foreign & set(o.parameters)}
    return not owners & set(stepping_between(evidence, step, later.step))


@rule("wrong-model-grad")
def wrong_model_grad(evidence: Evidence) -> Iterator[Finding]:
    """Backward calls that sent gradients to parameters no optimizer stepping next updates,
    while another optimizer of the run does; an error once such a gradient is applied."""
    later = {s.step: n.step for s, n in zip(evidence.snapshots, evidence.snapshots[1:])}
    found: dict[tuple[str, ...], list[tuple[Snapshot, int]]] = {}
    known: dict[tuple, bool] = {}
    for snapshot in evidence.snapshots:
        if snapshot.call != "backward":
            continue
        until = later.get(snapshot.step, snapshot.step + 1)
        reached = _reached(snapshot)
        foreign = foreign_parameters(evidence, reached, snapshot.step, until)
        if foreign and _behind_once(snapshot, foreign, reached - foreign, known):
            found.setdefault(tuple(sorted(foreign)), []).append((snapshot, until))
    for foreign, steps in found.items():
        yield _finding(evidence, list(foreign), steps)


def _finding(evidence: Evidence, foreign: list[str], steps: list[tuple[Snapshot, int]]) -> Finding:
    """One finding for the steps whose backward sent gradients to the same foreign parameters."""
    first, until = steps[0]
    snapshots = [s for s, _ in steps]
    stepping = names_text(stepping_between(evidence, first.step, until))
    owners = names_text([o.name for o in evidence.optimizers if set(foreign) & set(o.parameters)])
    output = first.of_kind(NodeKind.OUTPUT)[0]
    where = steps_text([s.step for s in snapshots])
    message = (f"the backward of {where} (of `{output.title}`) sent gradients to {names_text(foreign)}, "
               f"which {stepping}, stepping next, does not update: they belong to {owners}.")
    later, held = _next_use(evidence, set(foreign), first.step)
    stale = any(accumulated(n) for n in held)
    detach = ("detach what one model hands to the other in this loss (`netD(fake.detach())` in a GAN's "
              "discriminator step), so its backward stops there")
    if stale:
        message += (f" Nothing zeroed them before step {later.step}'s backward added its own, so {owners} "
                    "applies both.")
    elif all(_cleared_unapplied(evidence, set(foreign), snapshot.step) for snapshot in snapshots):
        message += (f" Each time, the next backward to reach them found in their `.grad` only the gradient "
                    f"it gave them, and {owners} did not step in between: the stray gradients were never "
                    "applied, and that part of the backward is work for nothing.")
        return Finding("wrong-model-grad", "warning", message, detach + " and does not do it.",
                       backward_location(evidence, first), first.step)
    fix = detach + "; else zero the other model's gradients before its own backward."
    return Finding("wrong-model-grad", "error" if stale else "warning", message, fix,
                   backward_location(evidence, first), first.step)
