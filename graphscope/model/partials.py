"""The JSON form of a `Partial` (what one step captured, sharing the history of earlier
steps): one line of a run file, read back into the same Partial.

Keys made of steps and function numbers are written as nested lists and read back as
tuples; gradient statistics as in a step's JSON; a step's own graph as its node-link data,
less the node attributes that are null.
"""

from __future__ import annotations

from typing import Any, Mapping

from graphscope.model.history import Partial
from graphscope.model.records import GradStat
from graphscope.model.snapshot import Snapshot, from_node_link, to_node_link


def _listed(value: Any) -> Any:
    """A key of nested tuples as nested lists."""
    return [_listed(v) for v in value] if isinstance(value, tuple) else value


def _tupled(value: Any) -> Any:
    """Inverse of `_listed`."""
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def partial_to_dict(partial: Partial, loss_scale: float | None = None) -> dict[str, Any]:
    """One step of a run as JSON-ready data: its graph, how its functions read each other,
    and what it knows of the earlier steps' history it reached."""
    graph = to_node_link(partial.snapshot)
    graph["nodes"] = [{key: value for key, value in node.items() if value is not None} for node in graph["nodes"]]
    data: dict[str, Any] = {"graph": graph, "whole": partial.whole}
    if loss_scale is not None:
        data["graph"]["graph"]["loss_scale"] = loss_scale
    if partial.children:
        data.update(first=partial.first, children=_listed(partial.children), roots=list(partial.roots),
                    tensors=_listed(partial.tensors))
    if not partial.whole:
        data.update(refs=[[fi, list(key)] for fi, key in partial.refs.items()],
                    deep_leaves=[[list(key), node] for key, node in partial.deep_leaves.items()],
                    deep_grads=[[_listed(key), None if stat is None else stat.to_dict()]
                                for key, stat in partial.deep_grads.items()],
                    freed=sorted(map(list, partial.freed)))
    return data


def partial_from_dict(data: Mapping[str, Any], first_names: Mapping) -> Partial:
    """Inverse of `partial_to_dict`, every step sharing the run's `first_names`."""
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
