"""Identical module calls in a row drawn as one box that says how many (`× 20 cell`).

The 24 layers of an encoder, or the steps of an RNN cell unrolled by hand, are module calls
of the same structure, each feeding the next. When a view of them is still too big, such a
run becomes one box; it is folded only when the calls are structurally the same (the same
ops wired the same way, parameters of the same shapes and names within their call, made in
the same step), so the box's one description is true of every call it stands for.
"""

from __future__ import annotations

import re
from collections import Counter

from graphscope.analysis.boxes import Box, View, as_view, remap
from graphscope.analysis.spans import cyclic, note
from graphscope.model import Node, NodeKind

MIN_REPEAT = 3
REPEAT = "repeat:"
ROUNDS = 3
_INDEX = re.compile(r"\.\d+(?=\.|$)")


def _structure(box: Box, table: dict[tuple, int]) -> tuple:
    """A box's contents up to renaming: each node labelled by what it is, then ROUNDS times by
    its label and its neighbours' (Weisfeiler-Lehman), counted; `table` numbers the labels
    the same way for every box compared."""
    label = {n.id: table.setdefault(("node", n.kind.value, n.op, n.shape if n.kind is NodeKind.LEAF else None,
                                     box.local_name(n) if n.kind is NodeKind.LEAF else None), len(table))
             for n in box.members}
    inputs: dict[str, list[str]] = {node_id: [] for node_id in label}
    users: dict[str, list[str]] = {node_id: [] for node_id in label}
    for edge in box.edges:
        inputs[edge.target].append(edge.source)
        users[edge.source].append(edge.target)
    for _ in range(ROUNDS):
        label = {i: table.setdefault((label[i], tuple(sorted(label[j] for j in inputs[i])),
                                      tuple(sorted(label[j] for j in users[i]))), len(table)) for i in label}
    return tuple(sorted(Counter(label.values()).items()))


def _signatures(view: View) -> dict[str, tuple]:
    """Box id -> what must be equal for two calls to fold: module path up to layer numbers,
    the step the call was made in, and its structure."""
    table: dict[tuple, int] = {}
    return {node.id: (_INDEX.sub(".#", node.name or ""), node.first_step, _structure(view.boxes[node.id], table))
            for node in view.nodes if node.id in view.boxes}


def _runs(view: View, signature: dict[str, tuple]) -> list[list[str]]:
    """Runs of at least MIN_REPEAT boxes of one signature, each the only such user of the one before."""
    def alike(box: str, others: list[str]) -> list[str]:
        return list(dict.fromkeys(o for o in others if signature.get(o) == signature[box]))

    after = {box: alike(box, view.users_of(box)) for box in signature}
    before = {box: alike(box, view.inputs_of(box)) for box in signature}
    linked = {box: nxt[0] for box, nxt in after.items() if len(nxt) == 1 and before[nxt[0]] == [box]}
    starts = [box for box in signature if box in linked and box not in set(linked.values())]
    runs = []
    for box in starts:
        run = [box]
        while run[-1] in linked:
            run.append(linked[run[-1]])
        if len(run) >= MIN_REPEAT:
            runs.append(run)
    return runs


def _range_name(names: list[str]) -> str:
    """`cell` for calls of one module, `model.layers.0 … 23` for a run of numbered layers."""
    if len(set(names)) == 1:
        return names[0]
    return f"{names[0]} … {names[-1].rsplit('.', 1)[-1]}"


def _folded(view: View, run: list[str]) -> tuple[Node, Box]:
    """The box standing for a run of calls, and what it stands for."""
    nodes = [view[box] for box in run]
    boxes = [view.boxes[box] for box in run]
    node = nodes[0]._replace(id=f"{REPEAT}{run[0]}", name=_range_name([n.name or n.id for n in nodes]),
                             folded=sum(n.folded or 0 for n in nodes))
    box = Box(tuple(m for b in boxes for m in b.members), tuple(e for b in boxes for e in b.edges),
              tuple(p for b in boxes for p in b.paths), tuple(run))
    return node, box


def _fold(view: View, runs: list[list[str]]) -> View:
    """The view with each run drawn as one box (`repeat:` and its first box's id), standing for all of them."""
    target = {box: f"{REPEAT}{run[0]}" for run in runs for box in run}
    stands_for = dict(view.boxes)
    extra = []
    for run in runs:
        node, box = _folded(view, run)
        extra.append(node)
        for old in run:
            del stands_for[old]
        stands_for[node.id] = box
    return remap(as_view(view, stands_for), target, extra)


def _home_leaves(view: View, folded: set[str]) -> View:
    """Leaves used only by one folded box (a cell's weights) go inside it."""
    target, stands_for = {}, dict(view.boxes)
    for leaf in view.of_kind(NodeKind.LEAF):
        users = set(view.users_of(leaf.id))
        if len(users) == 1 and next(iter(users)) in folded:
            home = next(iter(users))
            target[leaf.id] = home
            box = stands_for[home]
            stands_for[home] = Box((*box.members, leaf), box.edges, box.paths, box.calls)
    if not target:
        return view
    return remap(as_view(view, stands_for), target, [])


def fold_repeats(view: View) -> View:
    """Runs of at least MIN_REPEAT structurally identical module calls, each feeding the next,
    drawn as one box; a run whose folding would make the picture circular is left as it is."""
    if not isinstance(view, View) or not view.boxes:
        return view
    runs = _runs(view, _signatures(view))
    while runs:
        folded = _fold(view, runs)
        loops = cyclic(folded)
        if not loops:
            break
        runs = [run for run in runs if f"{REPEAT}{run[0]}" not in loops]
    if not runs:
        return view
    folded = _home_leaves(folded, {f"{REPEAT}{run[0]}" for run in runs})
    calls = sum(len(run) for run in runs)
    return note(folded, f"view: {calls} identical module calls in {len(runs)} run(s) are drawn as one box "
                        "per run (× N on the box)")
