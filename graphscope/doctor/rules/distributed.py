"""DistributedDataParallel: parameters that stopped receiving gradient."""

from __future__ import annotations

import re
from typing import Iterator, Sequence

from graphscope.doctor import scriptsource as code
from graphscope.doctor.evidence import Evidence, base_name, names_text, rule
from graphscope.model import Finding, NodeKind, Snapshot

_UNFINISHED = "Expected to have finished reduction in the prior iteration"
_INDICES = re.compile(r"Parameter indices which did not receive grad for rank \d+: ([\d ]+)")
_NAMED = re.compile(r"Parameters which did not receive grad for rank \d+: ([^\n]+)")


@rule("ddp-unused-parameter")
def ddp_unused_parameter(evidence: Evidence) -> Iterator[Finding]:
    """DDP stopped because parameters got no gradient in a step: which, since when, and the
    forward branch that left them out."""
    failure = evidence.failure
    if failure is None or _UNFINISHED not in failure.message:
        return
    names, known = _unused_names(failure.message, evidence.ddp_parameters)
    stopped = _stopped_step(evidence.snapshots, names) if known else None
    branch = _skipping_branch(evidence.snapshots, names, stopped) if stopped else None
    them = names_text(names) if names else "some parameters"
    skipped = f"; the forward pass at {evidence.at(branch)} leaves them out" if branch else ""
    message = (f"DistributedDataParallel stopped at {evidence.at(failure.location)}: {them} received no "
               f"gradient {_when(stopped)}{skipped}. DDP waits for a gradient of every parameter in every "
               "step before it starts the next.")
    fix = ("pass `find_unused_parameters=True` to DistributedDataParallel (it then looks for unused "
           f"parameters in every step, at some cost), or use {them} in the loss of every step.")
    yield Finding("ddp-unused-parameter", "error", message, fix, branch or failure.location, stopped,
                  explains_failure=True)


def _when(stopped: int | None) -> str:
    """`from step 1 on (step 0 gave them one)`: when the parameters stopped receiving gradient."""
    if stopped is None:
        return "in the step before"
    if stopped == 0:
        return "in any step: the forward pass never uses them"
    return f"from step {stopped} on (step {stopped - 1} gave them one)"


def _unused_names(message: str, parameters: Sequence[str]) -> tuple[list[str], bool]:
    """The parameters DDP's message names, and whether by name: its indices turned into DDP's
    own names (`module.aux.weight`), else the names it gives with TORCH_DISTRIBUTED_DEBUG=INFO,
    else `parameter N`."""
    indices = _INDICES.search(message)
    found = [int(i) for i in indices.group(1).split()] if indices else []
    if found and all(i < len(parameters) for i in found):
        return [parameters[i] for i in found], True
    named = _NAMED.search(message)
    if named:
        return [name.strip() for name in named.group(1).split(",") if name.strip()], True
    return [f"parameter {i}" for i in found], False


def _is(leaf: str | None, name: str) -> bool:
    """Whether a leaf the user named (`model.module.aux.weight`) is the parameter DDP names."""
    leaf = base_name(leaf) or ""
    return leaf == name or leaf.endswith("." + name) or leaf.endswith("." + name.removeprefix("module."))


def _has(snapshot: Snapshot, names: Sequence[str]) -> bool:
    """True when the step's graph reaches one of the parameters."""
    return any(_is(leaf.name, name) for leaf in snapshot.of_kind(NodeKind.LEAF) for name in names)


def _stopped_step(snapshots: Sequence[Snapshot], names: Sequence[str]) -> int | None:
    """The first step whose graph lacks the parameters, after one that had them (0 when the
    first step already lacks them); None when no step lacks them."""
    for position, snapshot in enumerate(snapshots):
        if names and not _has(snapshot, names):
            return snapshot.step if position == 0 or _has(snapshots[position - 1], names) else None
    return None


def _skipping_branch(snapshots: Sequence[Snapshot], names: Sequence[str], stopped: int) -> str | None:
    """The line nearest the output, in the step that left the parameters out, that the step
    before did not run, in the file where that step used them: the branch taken instead."""
    before, now = (next(s for s in snapshots if s.step == k) for k in (stopped - 1, stopped))
    leaves = [leaf.id for leaf in before.of_kind(NodeKind.LEAF) if any(_is(leaf.name, n) for n in names)]
    used = {code.split_location(before[user].source)[0] for leaf in leaves for user in before.users_of(leaf)
            if before[user].source}
    earlier = {node.source for node in before.nodes}
    for node in now.nodes:
        where = code.split_location(node.source)
        if where and where[0] in used and node.source not in earlier:
            return node.source
    return None

