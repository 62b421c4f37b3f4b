"""History carried from step to step: a parameter turned into a non-leaf, graphs that grow."""

from __future__ import annotations

from typing import Iterator, Sequence

from graphscope.doctor import scriptsource as code
from graphscope.doctor.evidence import (Evidence, failed_on_none_grad, failure_sentence,
                                        names_text, rule, steps_text, upstream)
from graphscope.model import Finding, Node, NodeKind, Snapshot, base_name


def _former_leaf(snapshot: Snapshot, node: Node) -> Node | None:
    """The leaf a non-leaf variable used to hold and was computed from, if there is one."""
    if node.is_leaf or not node.name:
        return None
    leaves = [leaf for leaf in snapshot.of_kind(NodeKind.LEAF)
              if leaf.name != node.name and base_name(leaf.name) == node.name and leaf.requires_grad]
    if not leaves:
        return None
    computed_from = upstream(snapshot, node.id)
    return next((leaf for leaf in leaves if leaf.id in computed_from), None)


@rule("non-leaf-parameter")
def non_leaf_parameter(evidence: Evidence) -> Iterator[Finding]:
    """A variable that held a leaf requiring grad now holds a non-leaf computed from it."""
    reported = set()
    for snapshot in evidence.snapshots:
        for node in snapshot.of_kind(NodeKind.TENSOR):
            leaf = None if node.name in reported else _former_leaf(snapshot, node)
            if leaf is not None:
                reported.add(node.name)
                yield _non_leaf_finding(evidence, snapshot, node, leaf)


def _non_leaf_finding(evidence: Evidence, snapshot: Snapshot, node: Node, leaf: Node) -> Finding:
    """The finding for variable `node.name`, which stopped holding `leaf`."""
    name = node.name
    outcome = (f"retain_grad() keeps {name}.grad filled, but every new graph drags the update history along"
               if node.retains_grad else f"backward() will leave {name}.grad None")
    message = (f"`{name}` was a leaf tensor requiring grad in step {leaf.first_step}, but "
               f"{evidence.at(node.source)} then replaced it with a {node.op} result computed from that "
               f"leaf, outside torch.no_grad(): `{name}` is no longer a leaf, so {outcome}.")
    explains = failed_on_none_grad(evidence, [name])
    if explains:
        message += failure_sentence(evidence)
    fix = (f"keep `{name}` a leaf: update it in place without recording the update, "
           f"`with torch.no_grad(): {name} -= lr * {name}.grad` (or through `{name}.data`), "
           f"then zero {name}.grad before the next backward.")
    return Finding("non-leaf-parameter", "error", message, fix, node.source, snapshot.step,
                   (node.id, leaf.id), explains)


@rule("graph-growth")
def graph_growth(evidence: Evidence) -> Iterator[Finding]:
    """Graphs that keep earlier steps' history alive: carried into new graphs, or summed up."""
    yield from _carried_history(evidence)
    yield from _kept_losses(evidence)


def _history_span(snapshot: Snapshot, backward_steps: set[int]) -> list[int]:
    """The earlier backward steps whose nodes this step's graph still holds."""
    return sorted({n.first_step for n in snapshot.nodes
                   if n.carried_over(snapshot.step) and n.first_step in backward_steps})


def _carried_history(evidence: Evidence) -> Iterator[Finding]:
    """The step carrying the longest history, when it spans at least two earlier steps."""
    backward_steps = {s.step for s in evidence.snapshots if s.call == "backward"}
    worst, worst_span = None, []
    for snapshot in evidence.snapshots:
        span = _history_span(snapshot, backward_steps)
        if len(span) >= 2 and len(span) >= len(worst_span):
            worst, worst_span = snapshot, span
    if worst is not None:
        yield _growth_finding(evidence, worst, worst_span)


def _history_holders(snapshot: Snapshot) -> list[Node]:
    """Carried-over nodes that feed this step's new nodes: where old history enters the graph."""
    step = snapshot.step
    feeding = {e.source for e in snapshot.edges
               if snapshot[e.source].carried_over(step) and not snapshot[e.target].carried_over(step)}
    return [n for n in snapshot.nodes if n.id in feeding]


def _holder_names(evidence: Evidence, holders: Sequence[Node]) -> list[str]:
    """The variables the holders were assigned to (`h` for `h = cell(x, h)`), by their lines."""
    names: list[str] = []
    for location in dict.fromkeys(n.source for n in holders if n.source):
        statement = evidence.statement(location)
        names += code.assigned_names(statement) if statement is not None else []
    return list(dict.fromkeys(names))


def _growth_finding(evidence: Evidence, snapshot: Snapshot, span: list[int]) -> Finding:
    """The finding for a step whose graph holds the history of `span`."""
    holders = _history_holders(snapshot)
    names = _holder_names(evidence, holders)
    locations = list(dict.fromkeys(n.source for n in holders if n.source))
    carried = sum(n.carried_over(snapshot.step) for n in snapshot.nodes)
    who = names_text(names) if names else "a tensor"
    made = f", made at {evidence.at(locations[0])}," if locations else ""
    hands = "hand" if len(names) > 1 else "hands"
    message = (f"step {snapshot.step}'s graph still holds the graphs of {len(span)} earlier steps "
               f"({steps_text(span)}; {carried} of {len(snapshot.nodes)} nodes): {who}{made} {hands} each "
               f"step's history to the next, so every backward runs through all earlier steps again "
               f"and memory grows with every step.")
    return Finding("graph-growth", "error", message, _growth_fix(evidence, names, locations),
                   locations[0] if locations else None, snapshot.step, tuple(n.id for n in holders))


def _growth_fix(evidence: Evidence, names: list[str], locations: list[str]) -> str:
    """No grad for a parameter update (its line reads a `.grad`), else detach the carried state."""
    if any(code.grad_reads(s) for s in map(evidence.statement, locations) if s is not None):
        return ("update parameters without recording the update: in place under `with torch.no_grad():`, "
                "so the next step's graph starts from the leaf again.")
    state = names[0] if names else "state"
    return (f"detach what one step hands to the next, e.g. `{state} = {state}.detach()` at the start "
            "of each step (truncated backpropagation); keep the history only if you mean to "
            "backpropagate through every earlier step.")


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
    verb = "collects" if kept.appends else "adds up"
    message = (f"{evidence.at(location)} {verb} the `{kept.tensor}` tensor of every step, and each one "
               f"holds its step's whole graph: `{kept.holder}` keeps the graphs of all {len(steps)} "
               f"captured steps ({steps_text(steps)}) alive, so memory grows with every step.")
    number = f"{kept.tensor}.item()"
    fix = (f"keep a number, not the tensor: `{kept.holder}.append({number})`" if kept.appends
           else f"keep a number, not the tensor: `{kept.holder} += {number}`")
    fix += f" (or `{kept.tensor}.detach()` to keep a tensor without its graph)."
    return Finding("graph-growth", "warning", message, fix, location, steps[-1])
