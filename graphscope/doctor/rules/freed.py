"""A backward through a graph whose saved tensors an earlier backward freed."""

from __future__ import annotations

from typing import Iterator

from graphscope.doctor.evidence import Evidence, failing_snapshot, failure_matches, failure_sentence, rule
from graphscope.model import Finding, Node, NodeKind, Snapshot


SECOND_TIME = "Trying to backward through the graph a second time"


@rule("backward-twice")
def backward_twice(evidence: Evidence) -> Iterator[Finding]:
    """A backward through a graph whose saved tensors an earlier backward already freed."""
    snapshot = failing_snapshot(evidence, SECOND_TIME)
    if snapshot is not None:
        yield _backward_twice_finding(evidence, snapshot)
    elif failure_matches(evidence, SECOND_TIME):
        message = ("the script read tensors saved for backward after a backward() had freed them: "
                   f"{evidence.at(evidence.failure.location)}." + failure_sentence(evidence))
        yield Finding("backward-twice", "error", message, _BACKWARD_TWICE_FIX, evidence.failure.location,
                      None, (), True)


_BACKWARD_TWICE_FIX = ("pass retain_graph=True to the earlier backward() if you really need to go through "
                       "the same graph again (it keeps the saved tensors in memory), or recompute the forward "
                       "pass before the second backward().")


def _freed_functions(snapshot: Snapshot) -> list[Node]:
    """Functions whose saved tensors were found freed; without that record, every carried-over one."""
    freed = [n for n in snapshot.of_kind(NodeKind.FUNCTION) if n.saved_freed]
    return freed or [n for n in snapshot.of_kind(NodeKind.FUNCTION) if n.carried_over(snapshot.step)]


def _identity(node: Node) -> tuple:
    """What names one autograd node across steps: its op, its source line, its first step."""
    return node.op, node.source, node.first_step


def _freeing_step(evidence: Evidence, snapshot: Snapshot, freed: list[Node]) -> Snapshot | None:
    """The last earlier step whose backward went through the freed functions."""
    wanted = {_identity(n) for n in freed}
    earlier = [s for s in evidence.snapshots if s.step < snapshot.step]
    return next((s for s in reversed(earlier) if wanted & {_identity(n) for n in s.nodes}), None)


def _saved_names(earlier: Snapshot, freed: list[Node]) -> list[str]:
    """`a (self)`, `b (other)`: the tensors the freed functions had saved, as that earlier step saw them."""
    wanted = {_identity(n) for n in freed}
    targets = {n.id for n in earlier.nodes if _identity(n) in wanted}
    saved = [earlier[e.source] for e in earlier.edges
             if e.target in targets and earlier[e.source].kind is NodeKind.SAVED]
    return sorted({f"{n.name} ({n.op})" if n.name else f"its {n.op}" for n in saved})


def _backward_twice_finding(evidence: Evidence, snapshot: Snapshot) -> Finding:
    """The finding for a failed second backward through a freed graph."""
    freed = _freed_functions(snapshot)
    earlier = _freeing_step(evidence, snapshot, freed)
    output = snapshot.of_kind(NodeKind.OUTPUT)[0]
    saved = _saved_names(earlier, freed) if earlier is not None else []
    functions = ", ".join(f"{n.op} (at {n.source or 'an unknown line'})" for n in freed[:3])
    lost = f": {', '.join(saved)}" if saved else ""
    freed_by = f"the backward of step {earlier.step}" if earlier is not None else "an earlier backward"
    message = (f"step {snapshot.step}'s backward goes through the graph of `{output.title}`, made at "
               f"{evidence.at(output.source)}, a second time, but {freed_by} already freed the tensors "
               f"that {functions} saved for it{lost}.")
    explains = failure_matches(evidence, SECOND_TIME)
    location = evidence.failure.location if explains else output.source
    if explains:
        message += failure_sentence(evidence)
    return Finding("backward-twice", "error", message, _BACKWARD_TWICE_FIX, location, snapshot.step,
                   tuple(n.id for n in freed), explains)
