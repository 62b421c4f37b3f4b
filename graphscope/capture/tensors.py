"""Tensor nodes: the outputs, the named non-leaf tensors the graph uses, and the names of
tensors from earlier steps where their history enters this one. A `builder` here is the
walker's, which reads the graph into a Walk."""

from __future__ import annotations

from typing import Any

from graphscope.capture.identity import Stamp, made_step
from graphscope.capture.pending import TENSOR_ATTRIBUTES, fields, short_op
from graphscope.capture.sources import SOURCE_KEY
from graphscope.model import Node, NodeKind


def attach_tensor_nodes(builder: Any) -> None:
    """Outputs, then named non-leaf tensors that the graph uses, become tensor nodes of the
    (function, output) they stand for; named ones wait to be placed after the functions."""
    walk = builder.walk
    index, tensor_node = walk.index, walk.pending.tensor_node
    for (fn, nr), node in builder.output_keys:
        tensor_node.setdefault((index[fn], nr), node)
    keys = [(index[fn], nr, fn) for fn, nr in builder.names.nonleaves
            if fn in index and (index[fn], nr) not in tensor_node]
    if not walk.stopped_early:
        keys = _used(keys, walk.pending.reads)  # else the rebuilt step, which sees every reader, decides
    for fi, nr, fn in keys:
        name, tensor = builder.names.nonleaves[(fn, nr)]
        walk.pending.named.append((fi, nr, builder.record(NodeKind.TENSOR, tensor, name, "")))
        walk.named_tensors.append(tensor)
    if builder.stamp is not None:
        _attach_earlier_names(builder)


def _made_before(metadata: dict, stamp: Stamp) -> bool:
    """True for a node made in a step before this one (one made when no stamp tells is not)."""
    made = made_step(metadata, stamp)
    return made is not None and made < stamp.step


def _attach_earlier_names(builder: Any) -> None:
    """Outputs of earlier steps' functions that had a name when a step captured them, have none
    now, and feed this step's own new nodes: where the history of that step enters this graph
    (`hidden (from step 0)`, for an RNN state not detached), drawn as a tensor node with the
    name it had then."""
    walk, stamp = builder.walk, builder.stamp
    names_key, tensor_node, functions = stamp.keys.names, walk.pending.tensor_node, walk.functions
    taken = {(fi, nr) for fi, nr, _ in walk.pending.named}
    named = {fi: fn.metadata[names_key] for fi, fn in enumerate(functions)
             if names_key in fn.metadata and _made_before(fn.metadata, stamp)}
    entries = sorted({(child, nr) for child, reader, nr in walk.pending.reads
                      if child in named and nr in named[child] and named[child][nr][1] < stamp.step
                      and made_step(functions[reader].metadata, stamp) == stamp.step
                      and (child, nr) not in tensor_node and (child, nr) not in taken})
    for fi, nr in entries:
        name, named_in, fields = named[fi][nr]
        fn = functions[fi]
        record = Node("", NodeKind.TENSOR, short_op(fn.name()), f"{name} (from step {named_in})", *fields,
                      first_step=made_step(fn.metadata, stamp), source=fn.metadata.get(SOURCE_KEY))
        walk.pending.named.append((fi, nr, record))
        walk.named_tensors.append(None)


def stamp_names(builder: Any) -> None:
    """Write on each named non-leaf's function the name its output has now, the step and its
    fields, so a later step that reaches it as history can say which variable it was."""
    names_key, step = builder.stamp.keys.names, builder.stamp.step
    for (fn, nr), (name, tensor) in builder.names.nonleaves.items():
        outputs = fn.metadata.setdefault(names_key, {})
        if nr not in outputs:
            outputs[nr] = (name, step, fields(TENSOR_ATTRIBUTES(tensor)))


def _used(keys: list[tuple[int, int, Any]], reads: list[tuple[int, int, int]]) -> list[tuple[int, int, Any]]:
    """The (function, output) pairs some node of the graph reads: an output of split() or
    unbind() that nothing consumes is not part of the graph. A function with one output that
    was reached is read, so only multi-output functions need a look at the inputs read."""
    many = {fi for fi, _, fn in keys if len(getattr(fn, "_input_metadata", ((), ()))) > 1}
    if not many:
        return keys
    read = {(child, nr) for child, _, nr in reads if child in many}
    return [key for key in keys if key[0] not in many or key[:2] in read]


def attach_deep_names(builder: Any) -> None:
    """Named tensors and leaves inside the history the walk stopped at: a tensor node for
    each named non-leaf (kept if the rebuilt step reads it), and this step's record of every
    leaf of the session still alive (its name, fields and `.grad` now)."""
    walk, stamp, names = builder.walk, builder.stamp, builder.names
    deep_tensors = []
    for (fn, nr), (name, tensor) in names.nonleaves.items():
        if fn not in walk.index and stamp.at_key in fn.metadata:
            node = builder.add_tensor(NodeKind.TENSOR, tensor, name)
            walk.nodes[node] = walk.nodes[node]._replace(origin=(*fn.metadata[stamp.at_key], nr))
            deep_tensors.append((node, fn.metadata[stamp.at_key], nr))
    local = {walk.refs.get(fi, (stamp.step, fi)) for fi in range(len(walk.children))}
    registry = stamp.leaves.tensors
    for key, tensor in [(key, ref()) for key, ref in registry.items()]:
        if tensor is None:
            del registry[key]
        elif key not in local:
            name = names.leaf_name(tensor)
            stamp.leaves.remember(key, name, stamp.step)
            walk.deep_leaves[key] = builder.add_tensor(NodeKind.LEAF, tensor, name)
    walk.tensor_keys += tuple(deep_tensors)
