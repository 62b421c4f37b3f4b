"""Readable views of large graphs: collapse deep modules, fold long chains, split shared leaves.

A view is a Snapshot too (torch-free, deterministic), so every renderer draws it as it is.
Graphs within the node budget are left untouched; above it, module calls deeper than a
chosen depth become one box each, runs of the same op become one node (`× 997
SubBackward0`), and a leaf used by many ops is drawn once per use (a weight shared by
every step of an unrolled RNN otherwise makes the layout explode). What was hidden is
said in the snapshot's notes, which the legend shows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from graphscope.errors import GraphscopeError
from graphscope.model import Edge, Node, NodeKind, Snapshot

DEFAULT_BUDGET = 150
MIN_CHAIN = 4
MAX_LEAF_USES = 8


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


def _depth(path: str | None) -> int:
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
        for node in snapshot.nodes if node.module and _depth(node.module) >= depth
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
    deepest = max((_depth(n.module) for n in snapshot.nodes), default=0)
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


def _remap(snapshot: Snapshot, target: dict[str, str], extra: list[Node]) -> Snapshot:
    """Replace nodes by their stand-ins; drop edges inside a stand-in; merge parallel edges
    (an edge keeps its gradient only when it is the one edge between its two boxes)."""
    nodes, placed = [], set()
    extra_by_id = {n.id: n for n in extra}
    for node in snapshot.nodes:
        new_id = target.get(node.id, node.id)
        if new_id not in placed:
            placed.add(new_id)
            nodes.append(extra_by_id.get(new_id, node))
    pairs = [(target.get(e.source, e.source), target.get(e.target, e.target)) for e in snapshot.edges]
    count: dict[tuple[str, str], int] = {}
    for pair in pairs:
        count[pair] = count.get(pair, 0) + 1
    edges, seen = [], set()
    for edge, pair in zip(snapshot.edges, pairs):
        if pair[0] == pair[1] or pair in seen:
            continue
        seen.add(pair)
        edges.append(Edge(*pair, edge.grad if count[pair] == 1 else None))
    return replace(snapshot, nodes=tuple(nodes), edges=tuple(edges))


def collapse_modules(snapshot: Snapshot, depth: int) -> Snapshot:
    """Every module call at `depth` becomes one box, with the parameters only it uses."""
    homes = _homes(snapshot, depth)
    ids = _box_ids(homes, snapshot)
    target = {node_id: ids[box] for node_id, box in homes.items()}
    members: dict[tuple, list[Node]] = {}
    for node in snapshot.nodes:
        if node.id in homes:
            members.setdefault(homes[node.id], []).append(node)
    boxes = [_module_node(ids[box], box[0], box[1], nodes, snapshot.step) for box, nodes in members.items()]
    view = _remap(snapshot, target, boxes)
    if boxes:
        view = _note(view, f"view: {len(target)} nodes inside {len(boxes)} module call(s) at depth {depth} "
                           "are drawn as one box each")
    return view


def _chains(snapshot: Snapshot) -> list[list[str]]:
    """Maximal runs of unnamed function nodes of one op, each feeding only the next."""
    inputs, users = snapshot.inputs_of, snapshot.users_of

    def linkable(a: Node, b: Node) -> bool:
        return (a.kind is b.kind is NodeKind.FUNCTION and a.op == b.op and users(a.id) == [b.id]
                and inputs(b.id) == [a.id])

    chains, placed = [], set()
    for node in snapshot.nodes:
        if node.id in placed or node.kind is not NodeKind.FUNCTION:
            continue
        after = [node.id]
        while len(users(after[-1])) == 1 and linkable(snapshot[after[-1]], snapshot[users(after[-1])[0]]):
            after.append(users(after[-1])[0])
        before = []
        first = node.id
        while len(inputs(first)) == 1 and linkable(snapshot[inputs(first)[0]], snapshot[first]):
            first = inputs(first)[0]
            before.append(first)
        run = before[::-1] + after
        placed.update(run)
        if len(run) >= MIN_CHAIN:
            chains.append(run)
    return chains


def fold_chains(snapshot: Snapshot) -> Snapshot:
    """Runs of at least MIN_CHAIN identical ops become one node that says how many."""
    target: dict[str, str] = {}
    folded = []
    for run in _chains(snapshot):
        first = snapshot[run[0]]
        folded.append(first._replace(folded=len(run)))
        target.update({node_id: first.id for node_id in run})
    view = _remap(snapshot, target, folded)
    if folded:
        view = _note(view, f"view: {len(target)} nodes in {len(folded)} chain(s) of one op are folded "
                           "(× N on the node)")
    return view


def split_shared_leaves(snapshot: Snapshot) -> Snapshot:
    """A leaf used by more than MAX_LEAF_USES ops is drawn once per use."""
    shared = {n.id for n in snapshot.of_kind(NodeKind.LEAF) if len(snapshot.users_of(n.id)) > MAX_LEAF_USES}
    if not shared:
        return snapshot
    nodes = []
    for node in snapshot.nodes:
        if node.id not in shared:
            nodes.append(node)
            continue
        count = len(snapshot.users_of(node.id))
        nodes += [node._replace(id=f"{node.id}~{k}", name=f"{node.title} (use {k + 1} of {count})")
                  for k in range(count)]
    edges, uses = [], {leaf: 0 for leaf in shared}
    for edge in snapshot.edges:
        if edge.source in shared:
            use = uses[edge.source]
            uses[edge.source] = use + 1
            edge = edge._replace(source=f"{edge.source}~{use}")
        edges.append(edge)
    view = replace(snapshot, nodes=tuple(nodes), edges=tuple(edges))
    return _note(view, f"view: {len(shared)} leaf tensor(s) used more than {MAX_LEAF_USES} times are "
                       "drawn once per use")


def _note(snapshot: Snapshot, text: str) -> Snapshot:
    """The snapshot with one more note."""
    return replace(snapshot, notes=(*snapshot.notes, text))


def readable(snapshot: Snapshot, options: ViewOptions = ViewOptions()) -> Snapshot:
    """The view drawn by default: the graph itself when it fits the budget, else a summary of it."""
    if options.full or (options.depth is None and len(snapshot.nodes) <= options.budget):
        return snapshot
    view = snapshot
    depth = options.depth if options.depth is not None else choose_depth(snapshot, options.budget)
    if depth is not None:
        view = collapse_modules(view, depth)
    view = fold_chains(view)
    view = split_shared_leaves(view)
    if len(view.nodes) != len(snapshot.nodes):
        view = _note(view, f"view: {len(snapshot.nodes)} nodes drawn as {len(view.nodes)}; "
                           "--full draws every node")
    return view
