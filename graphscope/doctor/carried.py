"""Where the history of earlier steps enters a step's graph: through which variable, made where,
how much it drags along, and which pattern carries it (a state handed from step to step, or
tensors kept in a container), so the rules that explain growth and failed backwards agree."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from graphscope.model.snapshot import held_bytes
from graphscope.doctor import scriptsource as code
from graphscope.doctor.evidence import Evidence
from graphscope.model import Node, NodeKind, Snapshot, base_name


@dataclass(frozen=True)
class Carried:
    """The history a step's graph holds. `entries` are where it enters (a tensor node named as
    the user named it, else the carried nodes that feed this step's new ones), `names` the
    variables it came through, `nodes` and `bytes` what it drags along (the bytes its
    functions saved for backward, as counted when captured), `steps` the earlier steps it comes
    from. `recurrent` says this step's new ops consume it on the very line that made it (a
    state handed from step to step: `h = cell(x, h)`, `w = w - lr * w.grad`); `kept` says it
    sits in a container (`log_probs[3]`)."""

    snapshot: Snapshot
    entries: tuple[Node, ...]
    names: tuple[str, ...]
    nodes: int
    bytes: int | None  # None when some carried function was captured without counting
    steps: tuple[int, ...]
    recurrent: bool
    kept: bool

    @property
    def lines(self) -> tuple[str, ...]:
        """Where the entries were made, in order, without repeats."""
        return tuple(dict.fromkeys(n.source for n in self.entries if n.source))


def _entries(snapshot: Snapshot) -> list[Node]:
    """Carried nodes that feed this step's new nodes; the named tensors among them when any."""
    step = snapshot.step
    holders = [n for n in snapshot.nodes if n.carried_over(step)
               and any(not snapshot[u].carried_over(step) for u in snapshot.users_of(n.id))]
    named = [n for n in holders if n.kind is NodeKind.TENSOR and n.name]
    return named or holders


def _assigned_names(evidence: Evidence, entries: list[Node]) -> list[str]:
    """The variables the entries' lines assigned (`h` for `h = cell(x, h)`)."""
    names: list[str] = []
    for location in dict.fromkeys(n.source for n in entries if n.source):
        statement = evidence.statement(location)
        names += code.assigned_names(statement) if statement is not None else []
    return list(dict.fromkeys(names))


def _appended_to(evidence: Evidence, entries: list[Node]) -> list[str]:
    """The containers the entries' lines append them to (`model.saved_actions` for
    `model.saved_actions.append(SavedAction(m.log_prob(action), value))`)."""
    lines = dict.fromkeys(n.source for n in entries if n.source)
    statements = [evidence.statement(location) for location in lines]
    return list(dict.fromkeys(filter(None, (code.appended_to(s) for s in statements if s is not None))))


def _collected(snapshot: Snapshot, entries: list[Node]) -> bool:
    """True when a new op of this step takes an entry together with a new node made on the
    entry's own line: tensors of every step gathered into one (a list never emptied)."""
    step = snapshot.step
    for entry in entries:
        for user in snapshot.users_of(entry.id):
            if snapshot[user].carried_over(step):
                continue
            siblings = [snapshot[i] for i in snapshot.inputs_of(user) if i != entry.id]
            if any(not s.carried_over(step) and s.source and s.source == entry.source for s in siblings):
                return True
    return False


def _recurrent(snapshot: Snapshot, entries: list[Node]) -> bool:
    """True when a new op of this step consumes an entry on the line that made the entry."""
    step = snapshot.step
    for entry in entries:
        users = [snapshot[u] for u in snapshot.users_of(entry.id)]
        if any(not u.carried_over(step) and u.source and u.source == entry.source for u in users):
            return True
    return False


def backward_steps(evidence: Evidence) -> set[int]:
    """The steps that were backward calls (an autograd.grad step hands no history on)."""
    return {s.step for s in evidence.snapshots if s.call == "backward"}


def spanned_steps(snapshot: Snapshot, backward: set[int]) -> tuple[int, ...]:
    """The earlier backward steps whose graphs `snapshot` still holds, in order."""
    return tuple(sorted(made for made in snapshot.digest().carried_steps if made in backward))


def carried(evidence: Evidence, snapshot: Snapshot) -> Carried | None:
    """The history `snapshot` holds, None when it holds none."""
    step = snapshot.step
    old = [n for n in snapshot.nodes if n.carried_over(step)]
    if not old:
        return None
    entries = _entries(snapshot)
    named = [base_name(n.name) for n in entries if n.kind is NodeKind.TENSOR and n.name]
    names = list(dict.fromkeys(named)) or _assigned_names(evidence, entries)
    steps = spanned_steps(snapshot, backward_steps(evidence))
    recurrent = _recurrent(snapshot, entries)
    containers = [] if recurrent else _appended_to(evidence, entries)
    if containers:  # the names a loop gave them now say less than the list that kept them
        names = containers
    kept = not recurrent and (any("[" in name for name in names) or bool(containers)
                              or _collected(snapshot, entries))
    return Carried(snapshot, tuple(entries), tuple(names), len(old), held_bytes(old), steps,
                   recurrent, kept)


def producer(snapshot: Snapshot, node: Node) -> Node:
    """The function a tensor node stands for the output of (the node itself otherwise)."""
    if node.kind is NodeKind.TENSOR or node.kind is NodeKind.OUTPUT:
        inputs = snapshot.inputs_of(node.id)
        if inputs:
            return snapshot[inputs[0]]
    return node


def freeing_step(evidence: Evidence, snapshot: Snapshot, node: Node) -> Snapshot | None:
    """The last earlier step whose graph held `node` (by its identity): whose backward freed it."""
    origin = producer(snapshot, node).origin
    if origin is None:
        return None
    for earlier in reversed([s for s in evidence.snapshots if s.step < snapshot.step]):
        if any(n.origin == origin for n in earlier.nodes):
            return earlier
    return None


def upstream_parameters(snapshot: Snapshot, node: Node) -> set[str]:
    """The names of the parameters (leaves requiring grad) `node` was computed from that got a
    gradient in this step."""
    seen, stack, found = {node.id}, [node.id], set()
    while stack:
        for source in snapshot.inputs_of(stack.pop()):
            if source not in seen:
                seen.add(source)
                stack.append(source)
                leaf = snapshot[source]
                if leaf.kind is NodeKind.LEAF and leaf.requires_grad and leaf.grad_step is not None and leaf.name:
                    found.add(base_name(leaf.name))
    return found


def stepping_between(evidence: Evidence, earlier: int, later: int) -> list[str]:
    """The optimizers that stepped after step `earlier` and before step `later` (their steps
    are in order: one search each)."""
    return [o.name for o in evidence.optimizers
            if bisect.bisect_left(o.steps, earlier) < bisect.bisect_left(o.steps, later)]


def foreign_parameters(evidence: Evidence, parameters: set[str], earlier: int, later: int) -> set[str]:
    """Of `parameters` (which got a gradient in step `earlier`), those that no optimizer
    stepping before step `later` updates, while another optimizer of the run does: the
    gradient reached a model whose optimizer was not the one meant to step next."""
    stepping = set(stepping_between(evidence, earlier, later))
    if not stepping:
        return set()
    owned_now = {p for o in evidence.optimizers if o.name in stepping for p in o.parameters}
    owned_later = {p for o in evidence.optimizers if o.name not in stepping for p in o.parameters}
    return {p for p in parameters if p not in owned_now and p in owned_later}


def pattern(evidence: Evidence, snapshot: Snapshot, state: Carried | None) -> str:
    """How a step came to need history an earlier backward freed or changed: `same-graph` (its
    output itself is from an earlier step), `state` (a state handed from step to step),
    `kept` (tensors of earlier steps kept in a container), `other-model` (the earlier
    backward ran through it into a model the optimizer stepping next does not update),
    `two-losses` (two backward calls through one forward), `unknown`."""
    if any(o.carried_over(snapshot.step) for o in snapshot.of_kind(NodeKind.OUTPUT)):
        return "same-graph"
    if state is None or not state.entries:
        return "unknown"
    if state.recurrent:
        return "state"
    if state.kept:
        return "kept"
    earlier = freeing_step(evidence, snapshot, state.entries[0])
    if earlier is not None and _other_model(evidence, earlier, snapshot, state.entries[0]):
        return "other-model"
    return "two-losses"


def _other_model(evidence: Evidence, earlier: Snapshot, snapshot: Snapshot, entry: Node) -> bool:
    """True when the earlier step's backward sent gradients through `entry` into parameters
    that the optimizer stepping before this step does not update."""
    twin = next((n for n in earlier.nodes if n.origin == producer(snapshot, entry).origin), None)
    if twin is None:
        return False
    return bool(foreign_parameters(evidence, upstream_parameters(earlier, twin), earlier.step, snapshot.step))


def made_text(evidence: Evidence, snapshot: Snapshot, node: Node) -> str:
    """`train.py:25 (`return self.main(z)`), inside the call at train.py:51 (`fake = netG(noise)`)`:
    where a node was made, and the outermost module call it was made in when that is elsewhere."""
    made_by = producer(snapshot, node)
    text = evidence.at(made_by.source)
    site = evidence.sites.get(made_by.calls[0][1]) if made_by.calls else None
    return text + (f", inside the call at {evidence.at(site)}" if site and site != made_by.source else "")
