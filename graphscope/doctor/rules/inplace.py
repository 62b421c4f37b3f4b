"""In-place changes autograd cannot record or could not undo."""

from __future__ import annotations

import re
from typing import Iterator

from graphscope.doctor import scriptsource as code
from graphscope.doctor.evidence import Evidence, failing_snapshot, failure_matches, failure_sentence, rule
from graphscope.doctor.rules.growth import failed_on_history
from graphscope.model import Finding, Node, NodeKind, Snapshot


_LEAF_INPLACE = re.compile(r"a (view of a )?leaf Variable that requires grad is being used in an in-place operation")


@rule("inplace-leaf")
def inplace_leaf(evidence: Evidence) -> Iterator[Finding]:
    """The script changed a leaf that requires grad in place, outside torch.no_grad()."""
    failure = evidence.failure
    found = _LEAF_INPLACE.search(failure.message) if failure else None
    if found is None:
        return
    statement = evidence.statement(failure.location)
    changed = code.inplace_changes(statement) if statement is not None else []
    name = changed[0] if changed else "a leaf tensor"
    through = " through a view of it (an index or a slice)" if found.group(1) else ""
    message = (f"{evidence.at(failure.location)} changes `{name}` in place{through}, but `{name}` is a leaf "
               "that requires grad: autograd cannot record an in-place change to a tensor whose gradient it "
               "accumulates." + failure_sentence(evidence))
    fix = (f"wrap the update in `with torch.no_grad():` (how optimizers update parameters); if the change "
           f"belongs in the graph, compute a new tensor instead (`{name}2 = {name} * 2`, or `{name}.clone()` first).")
    step = evidence.snapshots[-1].step if evidence.snapshots else None
    yield Finding("inplace-leaf", "error", message, fix, failure.location, step, (), True)


_MODIFIED = re.compile(r"modified by an inplace operation: \[(?P<tensor>.+?)\],? (?:which is output \d+ "
                       r"of (?P<op>\w+), )?is at version (?P<now>\d+); expected version (?P<then>\d+)")


def _modified_error(evidence: Evidence) -> tuple[re.Match[str], Snapshot | None] | None:
    """The version-counter error and the step it broke, from the failure or a step's notes."""
    snapshot = failing_snapshot(evidence, "modified by an inplace operation")
    texts = [evidence.failure.message] if evidence.failure else []
    texts += list(snapshot.notes) if snapshot is not None else []
    for text in texts:
        found = _MODIFIED.search(text)
        if found:
            return found, snapshot or (evidence.snapshots[-1] if evidence.snapshots else None)
    return None


def _error_shape(error: re.Match[str]) -> tuple[int, ...] | None:
    """The shape of the tensor a version-counter error names: `torch.FloatTensor [8, 4]` -> (8, 4)."""
    found = re.search(r"\[([\d, ]*)\]$", error["tensor"])
    return None if found is None else tuple(int(d) for d in found.group(1).replace(" ", "").split(",") if d)


def _holds_shape(snapshot: Snapshot | None, name: str, shape: tuple[int, ...] | None) -> bool:
    """False only when the step shows the tensor named `name` with another shape than `shape`."""
    if snapshot is None or shape is None:
        return True
    node = next((n for n in snapshot.nodes if n.name == name and n.shape is not None), None)
    return node is None or tuple(node.shape) == shape


def _changer(evidence: Evidence, producer: Node, error: re.Match[str], snapshot: Snapshot | None) -> str | None:
    """The first line after the producer's that changes its result in place: in a variable the
    producer's line assigned, whose tensor has the shape PyTorch names (else it is not the one)."""
    where = code.split_location(producer.source)
    statement = evidence.statement(producer.source)
    names = set(code.assigned_names(statement)) if statement is not None else set()
    names = {name for name in names if _holds_shape(snapshot, name, _error_shape(error))}
    tree = evidence.tree(where[0]) if where else None
    failure = code.split_location(evidence.failure.location) if evidence.failure else None
    until = failure[1] if failure and where and failure[0] == where[0] and failure[1] > where[1] else None
    lines = code.inplace_lines(tree, names, where[1], until) if tree is not None and names else []
    return f"{where[0]}:{lines[0]}" if lines else None


def _producer(snapshot: Snapshot | None, op: str | None) -> Node | None:
    """The backward function of the forward op the error names (`Exp` -> ExpBackward0)."""
    if snapshot is None or not op:
        return None
    return next((n for n in snapshot.of_kind(NodeKind.FUNCTION) if (n.op or "").startswith(op + "Backward")), None)


def _modified_message(evidence: Evidence, error: re.Match[str], snapshot: Snapshot | None,
                      producer: Node | None, changer: str | None) -> str:
    """What backward needed, what changed it and how far the version counter moved."""
    step = f"step {snapshot.step}'s backward" if snapshot is not None else "backward"
    if producer is not None:
        what = f"the result of {error['op']} made at {evidence.at(producer.source)}"
        how = f"{evidence.at(changer)} changed it in place afterwards" if changer else \
            "an in-place op changed it afterwards"
    else:
        what = f"a [{error['tensor']}] tensor it saved in the forward pass"
        how = "it was changed in place afterwards, typically by optimizer.step() or an in-place parameter update"
    return (f"{step} needs {what}, but {how} (version {error['then']} → {error['now']}), so the value saved "
            "for backward is gone.")


@rule("inplace-modified")
def inplace_modified(evidence: Evidence) -> Iterator[Finding]:
    """Backward needed a saved tensor that an in-place op changed after the forward pass."""
    found = _modified_error(evidence)
    if found is None or failed_on_history(evidence) is not None:
        return  # a version error on history carried from step to step is graph-growth's symptom
    error, snapshot = found
    producer = _producer(snapshot, error["op"])
    changer = _changer(evidence, producer, error, snapshot) if producer is not None else None
    message = _modified_message(evidence, error, snapshot, producer, changer)
    explains = failure_matches(evidence, "modified by an inplace operation")
    if explains:
        message += failure_sentence(evidence)
    fix = ("use the out-of-place form (`y = y + 1` instead of `y += 1`, `y = y.relu()` instead of `y.relu_()`) "
           "or change a copy (`y = y.clone()`); for parameters, run backward() before optimizer.step() and a "
           "fresh forward pass after it.")
    location = changer or (producer.source if producer else None) or (evidence.failure.location if explains else None)
    yield Finding("inplace-modified", "error", message, fix, location,
                  snapshot.step if snapshot else None, (producer.id,) if producer else (), explains)
