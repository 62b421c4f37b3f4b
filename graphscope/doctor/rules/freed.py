"""A backward through a graph whose saved tensors an earlier backward freed."""

from __future__ import annotations

import re
from typing import Iterator

from graphscope.doctor.carried import Carried, carried, freeing_step, made_text, pattern, producer
from graphscope.doctor.evidence import Evidence, failing_snapshot, failure_matches, failure_sentence, rule
from graphscope.model import Finding, Node, NodeKind, Snapshot

SECOND_TIME = "Trying to backward through the graph a second time"


@rule("backward-twice")
def backward_twice(evidence: Evidence) -> Iterator[Finding]:
    """A backward through a graph whose saved tensors an earlier backward already freed; a state
    handed from step to step, or tensors kept across steps, are graph-growth's to explain."""
    snapshot = failing_snapshot(evidence, SECOND_TIME)
    if snapshot is not None:
        state = carried(evidence, snapshot)
        kind = pattern(evidence, snapshot, state)
        if kind == "other-model":
            yield _other_model_finding(evidence, snapshot, state)
        elif kind in ("same-graph", "two-losses", "unknown"):
            yield _backward_twice_finding(evidence, snapshot, kind)
    elif failure_matches(evidence, SECOND_TIME):
        message = ("the script read tensors saved for backward after a backward() had freed them: "
                   f"{evidence.at(evidence.failure.location)}." + failure_sentence(evidence))
        fix = "recompute what you need after the backward, or read it before."
        yield Finding("backward-twice", "error", message, fix, evidence.failure.location, None, (), True)


_TWICE_FIX = ("pass retain_graph=True to the earlier backward() if you really mean to go through the same "
              "graph again (it keeps the saved tensors in memory), or recompute the forward pass before the "
              "second backward().")
_TWO_LOSSES_FIX = ("add the losses and call backward() once (`(loss_a + loss_b).backward()`), or pass "
                   "retain_graph=True to the first backward() when both must run separately.")


def _freed_functions(snapshot: Snapshot) -> list[Node]:
    """Functions of earlier steps whose saved tensors were found freed (this step's own ones the
    failing backward itself freed as it went); without that record, every carried-over one."""
    carried_over = [n for n in snapshot.of_kind(NodeKind.FUNCTION) if n.carried_over(snapshot.step)]
    return [n for n in carried_over if n.saved_freed] or carried_over


def _saved_names(earlier: Snapshot, freed: list[Node]) -> list[str]:
    """`a (self)`, `b (other)`: the tensors the freed functions had saved, as that earlier step saw them."""
    wanted = {n.origin for n in freed if n.origin is not None}
    targets = {n.id for n in earlier.nodes if n.origin in wanted}
    saved = [earlier[e.source] for e in earlier.edges
             if e.target in targets and earlier[e.source].kind is NodeKind.SAVED]
    return sorted({f"{n.name} ({n.op})" if n.name else f"its {n.op}" for n in saved})


def _backward_twice_finding(evidence: Evidence, snapshot: Snapshot, kind: str) -> Finding:
    """A second backward through one graph: the same output again, or two losses of one forward."""
    freed = _freed_functions(snapshot)
    earlier = freeing_step(evidence, snapshot, freed[0]) if freed else None
    output = snapshot.of_kind(NodeKind.OUTPUT)[0]
    saved = _saved_names(earlier, freed) if earlier is not None else []
    functions = ", ".join(f"{n.op} (at {n.source or 'an unknown line'})" for n in freed[:3])
    lost = f": {', '.join(saved)}" if saved else ""
    freed_by = f"the backward of step {earlier.step}" if earlier is not None else "an earlier backward"
    what = (f"the graph of `{output.title}`, made at {evidence.at(output.source)}, a second time"
            if kind == "same-graph" else "the forward pass an earlier backward already went through")
    message = (f"step {snapshot.step}'s backward goes through {what}, but {freed_by} already freed the "
               f"tensors that {functions} saved for it{lost}.")
    explains = failure_matches(evidence, SECOND_TIME)
    location = evidence.failure.location if explains else output.source
    if explains:
        message += failure_sentence(evidence)
    fix = _TWO_LOSSES_FIX if kind == "two-losses" else _TWICE_FIX
    return Finding("backward-twice", "error", message, fix, location, snapshot.step,
                   tuple(n.id for n in freed), explains)


def consumer_site(evidence: Evidence, earlier: Snapshot, entry_origin: tuple | None) -> str | None:
    """Where the earlier step's graph used the entry: the line of the outermost module call its
    first user ran in (`netD(fake)`), else that user's own line."""
    twin = next((n for n in earlier.nodes if n.origin == entry_origin), None)
    if twin is None:
        return None
    users = [earlier[u] for u in earlier.users_of(twin.id)]
    users = [f for u in users for f in ([earlier[v] for v in earlier.users_of(u.id)] if u.is_tensor else [u])]
    for user in users:
        if user.calls and user.calls[0][1] in evidence.sites:
            return evidence.sites[user.calls[0][1]]
        if user.source:
            return user.source
    return None


def _detached_line(evidence: Evidence, location: str | None, name: str) -> str | None:
    """The line at `location` with `name` detached where it is passed: `netD(fake.detach())`."""
    line = evidence.line(location)
    plain = name.split(".")[-1]
    changed = re.sub(rf"(?<![\w.]){re.escape(name)}(?![\w.(])", f"{name}.detach()", line, count=1)
    if changed == line and plain != name:
        changed = re.sub(rf"(?<![\w.]){re.escape(plain)}(?![\w.(])", f"{plain}.detach()", line, count=1)
    return changed if changed != line else None


def _other_model_finding(evidence: Evidence, snapshot: Snapshot, state: Carried) -> Finding:
    """A backward through a tensor whose graph the earlier step's backward freed when it ran into
    the model that made it (a GAN's discriminator step on `fake` without detach)."""
    entry = state.entries[0]
    name = state.names[0] if state.names else entry.title
    earlier = freeing_step(evidence, snapshot, entry)
    made_by = producer(snapshot, entry)
    site = consumer_site(evidence, earlier, made_by.origin) if earlier is not None else None
    output = snapshot.of_kind(NodeKind.OUTPUT)[0]
    message = (f"step {snapshot.step}'s backward (of `{output.title}`, made at {evidence.at(output.source)}) "
               f"goes through `{name}`, made at {made_text(evidence, snapshot, entry)} in step {entry.first_step}, but "
               f"the backward of step {earlier.step} already freed the graph that made it: that step's loss "
               f"used `{name}` at {evidence.at(site)}, so its backward ran on through `{name}` into the model "
               "that made it, and sent gradients to parameters its optimizer does not update.")
    explains = failure_matches(evidence, SECOND_TIME)
    if explains:
        message += failure_sentence(evidence)
    detached = _detached_line(evidence, site, name)
    fix = (f"detach `{name}` where step {earlier.step}'s loss uses it"
           + (f": `{detached}`" if detached else f", `{name}.detach()`")
           + f", so that backward stops at `{name}` and step {snapshot.step}'s backward still has the graph "
             "that made it.")
    return Finding("backward-twice", "error", message, fix, site or entry.source, snapshot.step, (entry.id,), explains)
