"""Readable views of large graphs: collapse deep modules, fold long chains and repeated calls.

A view is a Snapshot too (torch-free, deterministic), so every renderer draws it as it is;
a `View` also says what each module box stands for (its ops, its parameters). Graphs within
the node budget are drawn whole; above it, module calls deeper than a chosen depth become
one box each, runs of the same op become one node (`× 997 SubBackward0`), and identical calls
in a row become one box (`× 20 cell`). At any size a leaf whose edges would cross many ranks
is drawn once per use (a weight shared by every step of an unrolled RNN otherwise makes the
layout explode), and no view is handed to Graphviz that it cannot lay out in seconds: the
most detailed one that can is drawn instead. What was hidden is said in the notes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import Iterator

from graphscope.analysis.boxes import Box, View, as_view, merged_edges, remap
from graphscope.analysis.repeats import fold_repeats
from graphscope.analysis.spans import layout_cost, note, split_long_edges
from graphscope.errors import GraphscopeError
from graphscope.model import Edge, Node, NodeKind, Snapshot

DEFAULT_BUDGET = 150
MIN_CHAIN = 4
_ID, _SOURCE, _TARGET = attrgetter("id"), attrgetter("source"), attrgetter("target")


@dataclass(frozen=True)
class ViewOptions:
    """How much to show: a node budget, or a fixed module depth, or everything."""

    budget: int = DEFAULT_BUDGET
    depth: int | None = None
    full: bool = False

    def __post_init__(self) -> None:
        """Refuse a budget or depth that could draw nothing, as the command line does."""
        if not _at_least_one(self.budget):
            raise GraphscopeError(f"budget must be a whole number of nodes, at least 1, not {self.budget!r}")
        if self.depth is not None and not _at_least_one(self.depth):
            raise GraphscopeError(f"depth must be None or a whole number, at least 1, not {self.depth!r}")


def _at_least_one(value: object) -> bool:
    """A whole number (not a bool) of at least 1."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def module_depth(path: str | None) -> int:
    """Number of components of a module path (`model.layers.0` -> 3)."""
    return 0 if not path else path.count(".") + 1


def _prefix(path: str, depth: int) -> str:
    """The first `depth` components of a module path."""
    return ".".join(path.split(".")[:depth])


def _call_at(node: Node, depth: int) -> tuple[tuple[int, int], ...] | None:
    """The module calls around the node's box at `depth`, outermost first: its calls down to
    the innermost one whose path is at most `depth` deep (None when nothing says)."""
    if not node.calls:
        return None
    around = tuple(call for call in node.calls if call[0] <= depth)
    return around or None


def _homes(snapshot: Snapshot, depth: int) -> dict[str, tuple]:
    """Node id -> the module call it disappears into when modules at `depth` are collapsed, as
    (module path, the calls around it): two calls of one module are two boxes. A leaf goes
    with the one call that uses it. A module call of one node stays that node: a box would
    hide its op and show nothing more, so is a call of one op and its parameter."""
    target = {
        node.id: (_prefix(node.module, depth), _call_at(node, depth))
        for node in snapshot.nodes if node.module and module_depth(node.module) >= depth
    }
    ops = Counter(target.values())
    for node in snapshot.of_kind(NodeKind.LEAF):
        homes = {target.get(u) for u in snapshot.users_of(node.id)}
        if len(homes) == 1 and None not in homes:
            target[node.id] = homes.pop()
    return {node_id: box for node_id, box in target.items() if ops[box] > 1}


def _visible_at(snapshot: Snapshot, depth: int) -> int:
    """How many boxes remain when modules deeper than `depth` are collapsed."""
    target = _homes(snapshot, depth)
    return len(snapshot.nodes) - len(target) + len(set(target.values()))


def choose_depth(snapshot: Snapshot, budget: int) -> int | None:
    """The deepest module level whose collapsed view fits the budget (None: no modules)."""
    deepest = max((module_depth(n.module) for n in snapshot.nodes), default=0)
    if deepest == 0:
        return None
    for depth in range(deepest, 0, -1):
        if _visible_at(snapshot, depth) <= budget:
            return depth
    return 1


def _box_ids(target: dict[str, tuple], snapshot: Snapshot) -> dict[tuple, str]:
    """An id for each box, in walk order: `module:rnn` for the first call of a path, then
    `module:rnn~2`, `module:rnn~3` (deterministic, never from a call number)."""
    ids: dict[tuple, str] = {}
    seen: Counter[str] = Counter()
    for node in snapshot.nodes:
        box = target.get(node.id)
        if box is not None and box not in ids:
            seen[box[0]] += 1
            ids[box] = f"module:{box[0]}" + (f"~{seen[box[0]]}" if seen[box[0]] > 1 else "")
    return ids


def _module_node(box_id: str, path: str, calls: tuple | None, members: list[Node], step: int) -> Node:
    """One box standing for one collapsed module call: its ops' count, and the step it was made
    in when that is an earlier one (a call made this step is never drawn as carried)."""
    functions = [n for n in members if n.kind is NodeKind.FUNCTION]
    made = [n.first_step for n in functions if n.first_step is not None]
    first = min(made) if made and all(m < step for m in made) else (step if made else None)
    parent = path.rsplit(".", 1)[0] if "." in path else None
    return Node(box_id, NodeKind.MODULE, None, path, first_step=first,
                source=functions[0].source if functions else None, module=parent, folded=len(functions),
                calls=calls)


def _inside(snapshot: Snapshot, homes: dict[str, tuple]) -> dict[tuple, list[Edge]]:
    """The edges between two nodes of the same box, by box."""
    inside: dict[tuple, list[Edge]] = {}
    for edge in snapshot.edges:
        box = homes.get(edge.source)
        if box is not None and homes.get(edge.target) == box:
            inside.setdefault(box, []).append(edge)
    return inside


def collapse_modules(snapshot: Snapshot, depth: int) -> View:
    """Every module call at `depth` becomes one box, with the parameters only it uses."""
    homes = _homes(snapshot, depth)
    ids = _box_ids(homes, snapshot)
    target = {node_id: ids[box] for node_id, box in homes.items()}
    members: dict[tuple, list[Node]] = {}
    for node in snapshot.nodes:
        if node.id in homes:
            members.setdefault(homes[node.id], []).append(node)
    inside = _inside(snapshot, homes)
    boxes = [_module_node(ids[box], box[0], box[1], nodes, snapshot.step) for box, nodes in members.items()]
    stands_for = {ids[box]: Box(tuple(nodes), tuple(inside.get(box, ())), (box[0],)) for box, nodes in members.items()}
    view = remap(as_view(snapshot, stands_for),
                  target, boxes)
    if boxes:
        view = note(view, f"view: {len(target)} nodes inside {len(boxes)} module call(s) at depth {depth} "
                          "are drawn as one box each")
    return view


def _chains(snapshot: Snapshot) -> tuple[list[list[int]], dict[str, int]]:
    """Maximal runs of unnamed function nodes of one op, each feeding only the next, as node
    positions (read from one pass over the edges: a graph of a million ops is one long run),
    and the position of each node id."""
    nodes = snapshot.nodes
    position = dict(zip(map(_ID, nodes), range(len(nodes))))
    fan_out, fan_in = [0] * len(nodes), [0] * len(nodes)
    user, source = [-1] * len(nodes), [-1] * len(nodes)
    for a, b in zip(map(position.__getitem__, map(_SOURCE, snapshot.edges)),
                    map(position.__getitem__, map(_TARGET, snapshot.edges))):
        fan_out[a] += 1
        user[a] = b
        fan_in[b] += 1
        source[b] = a

    def linked(a: int, b: int) -> bool:
        """True when `a` feeds only `b`, `b` reads only `a`, and both are functions of one op."""
        return (fan_out[a] == 1 and user[a] == b and fan_in[b] == 1 and source[b] == a
                and nodes[a].kind is nodes[b].kind is NodeKind.FUNCTION and nodes[a].op == nodes[b].op)

    chains, placed = [], [False] * len(nodes)
    for start, node in enumerate(nodes):
        if placed[start] or node.kind is not NodeKind.FUNCTION:
            continue
        run = [start]
        while fan_out[run[-1]] == 1 and linked(run[-1], user[run[-1]]):
            run.append(user[run[-1]])
        first, before = start, []
        while fan_in[first] == 1 and linked(source[first], first):
            first = source[first]
            before.append(first)
        run = before[::-1] + run
        for i in run:
            placed[i] = True
        if len(run) >= MIN_CHAIN:
            chains.append(run)
    return chains, position


def fold_chains(snapshot: Snapshot) -> Snapshot:
    """Runs of at least MIN_CHAIN identical ops become one node that says how many, drawn where
    the first of them was (the run's first op names it)."""
    runs, position = _chains(snapshot)
    if not runs:
        return remap(snapshot, {}, [])
    nodes = snapshot.nodes
    stand_in = list(range(len(nodes)))
    folded: dict[int, Node] = {}
    for run in runs:
        first = run[0]
        folded[first] = nodes[first]._replace(folded=len(run))
        for i in run:
            stand_in[i] = first
    kept, placed = [], set()
    for i in range(len(nodes)):
        head = stand_in[i]
        if head not in placed:
            placed.add(head)
            kept.append(folded.get(head, nodes[i]))
    head_id = [nodes[head].id for head in stand_in]
    pairs = list(zip(map(head_id.__getitem__, map(position.__getitem__, map(_SOURCE, snapshot.edges))),
                     map(head_id.__getitem__, map(position.__getitem__, map(_TARGET, snapshot.edges)))))
    view = replace(snapshot, nodes=tuple(kept), edges=merged_edges(snapshot.edges, pairs))
    return note(view, f"view: {sum(map(len, runs))} nodes in {len(runs)} chain(s) of one op are folded "
                      "(× N on the node)")


@dataclass(frozen=True)
class _Level:
    """One view to try: modules collapsed at `depth` (None: none), chains of one op folded
    or not; then, for collapsed modules, the same with identical calls in a row folded."""

    depth: int | None
    chains: bool = True


def _levels(snapshot: Snapshot, options: ViewOptions) -> list[_Level]:
    """The views to try, most detailed first: what the options ask for, then coarser ones."""
    deepest = max((module_depth(n.module) for n in snapshot.nodes), default=0)
    depths: list[int | None] = list(range(deepest, 0, -1)) or [None]
    if options.depth is not None:
        depths = [options.depth, *range(min(options.depth - 1, deepest), 0, -1)]
    first = []
    if options.full:
        first = [_Level(None, chains=False), _Level(None)] if deepest else [_Level(None, chains=False)]
    elif options.depth is None and len(snapshot.nodes) <= options.budget:
        first = [_Level(None, chains=False)]
    return first + [_Level(depth) for depth in depths]


def _candidates(snapshot: Snapshot, options: ViewOptions) -> Iterator[Snapshot]:
    """Each view to try (before long edges are split), most detailed first."""
    for level in _levels(snapshot, options):
        view = snapshot if level.depth is None else collapse_modules(snapshot, level.depth)
        view = fold_chains(view) if level.chains else view
        yield view
        folded = fold_repeats(view) if level.depth is not None else view
        if folded is not view:
            yield folded


def _drawable(view: Snapshot) -> tuple[Snapshot | None, Snapshot | None]:
    """The view with its long edges split (leaves first, then any node) if that makes it
    quick to lay out: the first split that fits with the gradients written on its edges, and
    the first that fits without them (both the same when one fits with them; None for none)."""
    bare = None
    for drawn in (split_long_edges(view), split_long_edges(view, leaves_only=False)):
        cost = layout_cost(drawn)
        if cost.fits():
            return drawn, drawn
        if bare is None and replace(cost, labelled=False).fits():
            bare = drawn
    return None, bare


def _explained(snapshot: Snapshot, view: Snapshot, options: ViewOptions, fallback: bool) -> Snapshot:
    """The view with notes on what it hides and, when the options asked for more, why."""
    if fallback and (options.full or options.depth is not None):
        asked = "--full" if options.full else f"--depth {options.depth}"
        view = note(view, f"{asked}: that picture ({layout_cost(snapshot)}) would take too long to lay "
                          "out; this is the most detailed view that can be laid out in seconds")
    hidden = any(n.kind is NodeKind.MODULE or n.folded for n in view.nodes)
    if hidden and not options.full:
        view = note(view, f"view: {len(snapshot.nodes)} nodes drawn as {len(view.nodes)}; "
                          "--full draws every node")
    return view


def _within(view: Snapshot, drawn: Snapshot, snapshot: Snapshot, options: ViewOptions) -> bool:
    """True when a view keeps to the node budget: a graph within it is drawn whole, weights
    beside each use included; a summary of a bigger one counts those copies too (a hundred
    calls of a cell with four weights beside each is no summary)."""
    if options.full or options.depth is not None:
        return True
    return len(view.nodes) <= options.budget and (view is snapshot or len(drawn.nodes) <= options.budget)


def readable(snapshot: Snapshot, options: ViewOptions = ViewOptions()) -> Snapshot:
    """The view drawn: the most detailed one within the node budget (or at the depth, or in
    full, as the options ask) that Graphviz can lay out in seconds with the gradients written
    on its edges, else without them (the renderer then leaves them out); the snapshot itself
    when it fits whole. The coarsest view when none fits the budget, as it is when none can
    be laid out in time (the renderer then says so instead of trying)."""
    view: Snapshot = snapshot
    bare: Snapshot | None = None  # the most detailed view that fits only without edge labels
    for number, view in enumerate(_candidates(snapshot, options)):
        if not options.full and options.depth is None and len(view.nodes) > options.budget:
            continue
        drawn, unlabelled = _drawable(view)
        if drawn is not None and _within(view, drawn, snapshot, options):
            return _explained(snapshot, drawn, options, number > 0)
        if bare is None and unlabelled is not None and _within(view, unlabelled, snapshot, options):
            bare = _explained(snapshot, unlabelled, options, number > 0)
    if bare is not None:
        return bare
    drawn = _drawable(view)[0]
    return _explained(snapshot, view if drawn is None else drawn, options, True)
