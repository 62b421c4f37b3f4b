"""The JSON form of a `Partial` (what one step captured, sharing the history of earlier
steps): one line of a run file, read back into the same Partial.

Keys made of steps and function numbers are written as nested lists and read back as
tuples; gradient statistics as in a step's JSON; a step's own graph as its node-link data,
less the node attributes that are null (or, for a step that holds its whole graph and was
written as step JSON too, that file's very text, nulls and all).
"""

from __future__ import annotations

from itertools import compress
from operator import ne
from typing import Any, Callable, Iterable, Mapping

from graphscope.model.history import Partial
from graphscope.model.records import Edge, GradStat, Node, NodeKind
from graphscope.model.snapshot import Repeat, Snapshot, field_from_json, field_to_json, from_node_link, to_node_link

_FIELDS = Node._fields
_ORIGIN, _FIRST_STEP, _CALLS, _SAVED_BYTES = map(_FIELDS.index, ("origin", "first_step", "calls", "saved_bytes"))
_new = tuple.__new__  # a record from a C call: a long run writes millions
SAME_AS_GRAD = "grad"


def _tupled(value: Any) -> Any:
    """Keys written as JSON arrays (nested) read back as the tuples they were."""
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def moved(node: Node, like: int, step: int, calls_shift: int = 0, sized: bool = True) -> Node:
    """A record of step `like` as a step repeating its graph first has it: what was made and
    captured in `like` is made and captured in `step` (a leaf is the same tensor in both);
    what `like` made ran in module calls numbered `calls_shift` later and, unless `sized`,
    has no count of the bytes it saved."""
    if node.kind is NodeKind.LEAF:
        return node
    origin, first_step = node.origin, node.first_step
    carried = origin is not None and origin[0] == like
    if not carried and first_step != like:
        return node
    fields = list(node)
    if carried:
        fields[_ORIGIN] = (step, *origin[1:])
    if first_step == like:
        fields[_FIRST_STEP] = step
        if calls_shift and node.calls is not None:
            fields[_CALLS] = tuple((depth, number + calls_shift) for depth, number in node.calls)
        if not sized:
            fields[_SAVED_BYTES] = None
    return _new(Node, fields)


def shift_of_calls(pairs: Iterable[tuple[Node, Any]], like: int) -> int:
    """How many module calls later a step that repeats step `like`'s graph numbers its own:
    from the first of `like`'s records made inside a module call whose repeat's calls (paired
    with it) are known too; 0 when there is none."""
    return next((calls[0][1] - old.calls[0][1] for old, calls in pairs
                 if old.first_step == like and old.calls and calls), 0)


def _changes(old: Node, new: Node) -> dict[str, Any]:
    """The attributes in which `new` differs from `old`, as JSON-ready data (`grad_step`
    equal to `grad`, as after zero_grad, written as SAME_AS_GRAD)."""
    if old == new:
        return {}
    grad = new.grad
    return {name: None if value is None else SAME_AS_GRAD if name == "grad_step" and value == grad
            else field_to_json(name, value) for name, value in compress(zip(_FIELDS, new), map(ne, old, new))}


def _changed(node: Node, changes: Mapping[str, Any]) -> Node:
    """Inverse of `_changes`."""
    values = {name: field_from_json(name, value) for name, value in changes.items() if value != SAME_AS_GRAD}
    node = node._replace(**values)
    return node._replace(grad_step=node.grad) if changes.get("grad_step") == SAME_AS_GRAD else node


def _repeats(partial: Partial, template: Partial | None) -> bool:
    """True when `partial` can be written as changes to the records of `template`: the same
    nodes and edges, and no gradient on an edge."""
    if template is None:
        return False
    mine, theirs = partial.snapshot, template.snapshot
    return (len(mine.nodes) == len(theirs.nodes) and all(n.id == t.id for n, t in zip(mine.nodes, theirs.nodes))
            and len(mine.edges) == len(theirs.edges) and all(e.grad is None for e in mine.edges)
            and all((e.source, e.target) == (t.source, t.target) for e, t in zip(mine.edges, theirs.edges)))


def _like_to_dict(partial: Partial, template: Partial, known: Repeat | None = None) -> dict[str, Any]:
    """A step that repeats `template`'s graph: its step, notes and tensors, how far its module
    calls are numbered after the template's and whether it counted saved bytes, and how each
    record differs from the template's, moved to this step (only the records `known` holds,
    when its capture told which those are)."""
    like, step = partial.like, partial.snapshot.step
    olds = template.snapshot.nodes
    if known is None:
        pairs = list(enumerate(zip(olds, partial.snapshot.nodes)))
        shift = shift_of_calls(((old, new.calls) for _, (old, new) in pairs), like)
        sized = any(new.saved_bytes is not None for new in partial.snapshot.nodes)
    else:
        pairs = [(i, (olds[i], new)) for i, new in known.records.items()]
        shift, sized = known.calls_shift, known.sized
    graph = to_node_link(Snapshot((), (), step, partial.snapshot.call, partial.snapshot.notes,
                                  gradients=partial.snapshot.gradients))["graph"]
    changes = [[i, found] for i, (old, new) in pairs
               if not (new is old and old.kind is NodeKind.LEAF)  # a leaf record the step left as it was
               and (found := _changes(moved(old, like, step, shift, sized), new))]
    data = {"like": like, "graph": graph, "changes": changes, "tensors": partial.tensors, "whole": True}
    if shift:
        data["calls_shift"] = shift
    if not sized:
        data["saved_bytes"] = False
    return data


def partial_to_dict(partial: Partial, loss_scale: float | None = None,
                    template: Partial | None = None, whole_graph: bool = True) -> dict[str, Any]:
    """One step of a run as JSON-ready data: its graph, how its functions read each other,
    and what it knows of the earlier steps' history it reached; a step that repeats the
    graph of `template` (its `like`) as changes to it. Without `whole_graph`, a step that
    holds its whole graph leaves out its `graph` (its step JSON, encoded already, goes there)."""
    if partial.like is not None and loss_scale is None and template is not None:
        known = partial.snapshot.repeat()
        if known is not None or _repeats(partial, template):
            return _like_to_dict(partial, template, known)
    data: dict[str, Any] = {"whole": partial.whole}
    if whole_graph or not partial.whole:
        graph = to_node_link(partial.snapshot)
        graph["nodes"] = [{key: value for key, value in node.items() if value is not None} for node in graph["nodes"]]
        data["graph"] = graph
        if loss_scale is not None:
            data["graph"]["graph"]["loss_scale"] = loss_scale
    if partial.children:
        data.update(first=partial.first, children=partial.children, roots=list(partial.roots),
                    tensors=partial.tensors)
    if partial.refs:  # a whole step may reach leaves through accumulators an earlier step captured
        data["refs"] = [[fi, list(key)] for fi, key in partial.refs.items()]
    if not partial.whole:
        data.update(deep_leaves=[[list(key), node] for key, node in partial.deep_leaves.items()],
                    deep_grads=[[key, None if stat is None else stat.to_dict()]
                                for key, stat in partial.deep_grads.items()],
                    freed=sorted(map(list, partial.freed)))
    return data


def _like_from_dict(data: Mapping[str, Any], template: Partial) -> Partial:
    """Inverse of `_like_to_dict`."""
    like, graph = data["like"], data["graph"]
    step = int(graph["step"])
    shift, sized = int(data.get("calls_shift", 0)), data.get("saved_bytes", True) is not False
    nodes = [moved(node, like, step, shift, sized) for node in template.snapshot.nodes]
    for i, changes in data["changes"]:
        nodes[i] = _changed(nodes[i], changes)
    edges = tuple(Edge(e.source, e.target, None) for e in template.snapshot.edges)
    snapshot = Snapshot(tuple(nodes), edges, step, str(graph.get("call", "backward")), tuple(graph.get("notes", ())),
                        gradients=str(graph.get("gradients", "full")))
    return Partial(snapshot, template.first, template.children, True, {}, template.roots, _tupled(data["tensors"]),
                   {}, {}, template.first_names, frozenset(), like=like)


def partial_from_dict(data: Mapping[str, Any], first_names: Mapping,
                      earlier: Callable[[int], Partial] | None = None) -> Partial:
    """Inverse of `partial_to_dict`, every step sharing the run's `first_names`; `earlier(k)`
    gives step k, which a step that repeats its graph is written as changes to."""
    if "like" in data and earlier is not None:
        return _like_from_dict(data, earlier(data["like"]))
    snapshot: Snapshot = from_node_link(data["graph"])
    return Partial(
        snapshot=snapshot,
        first=int(data.get("first", 0)),
        children=_tupled(data.get("children", [])),
        whole=bool(data["whole"]),
        refs={fi: tuple(key) for fi, key in data.get("refs", ())},
        roots=tuple(data.get("roots", ())),
        tensors=_tupled(data.get("tensors", [])),
        deep_leaves={tuple(key): node for key, node in data.get("deep_leaves", ())},
        deep_grads={_tupled(key): GradStat.from_dict(stat) for key, stat in data.get("deep_grads", ())},
        first_names=first_names,
        freed=frozenset(tuple(key) for key in data.get("freed", ())),
    )


def names_to_list(first_names: Mapping) -> list[list[Any]]:
    """The first name each leaf of a run was given, and in which step, as JSON-ready rows."""
    return [[list(key), step, name] for key, (step, name) in first_names.items()]


def names_from_list(rows: list[list[Any]]) -> dict:
    """Inverse of `names_to_list`."""
    return {tuple(key): (step, name) for key, step, name in rows}
