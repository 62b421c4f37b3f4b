"""Steps that share history: each step keeps only what was new in it, and its whole graph is
rebuilt on demand.

A recording session walks each step's graph only down to the nodes an earlier step already
captured, so capturing a graph that drags N steps of history along costs the new nodes, not
the whole history again. A `Partial` is that walk: the new nodes, plus one node standing in
for each earlier node it reached (`refs`), and each function's inputs in slot order.
`rebuild` joins the partials back into the step's full Snapshot, in the same walk order and
with the same ids that walking the whole graph would give. Torch-free, like the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Hashable, Iterator, Mapping, Sequence, TypeVar, overload

from graphscope.model.records import Edge, GradStat, Node, NodeKind
from graphscope.model.snapshot import DIGESTED, Digest, Snapshot, held_bytes

Key = tuple[int, int]  # (step, function number in that step's walk): where a node was first captured


@dataclass(frozen=True)
class Partial:
    """What one step captured: its snapshot, cut short where earlier steps' nodes begin.

    Function `fi` is node `first + fi` of `snapshot`; `children[fi]` holds its inputs in slot
    order as (function number or -1, output number); `whole` is false when the walk stopped
    at an earlier step's function, so `snapshot` lacks the history behind it; `refs[fi]` is
    where an earlier step first captured function `fi`; `roots` are the outputs' functions;
    `tensors` lists (node, producer's key, output number) for each output and named tensor.
    Inside the history the walk stopped at, `deep_leaves` holds this step's record of each
    leaf of the session still alive, and `deep_grads` the gradients that flowed there: by
    (source, target key) for edges, ("out", key, output) for what a producer sent to a named
    tensor, and ("step", key) for a leaf's share. `first_names` (shared by the session's
    steps) holds the first name each leaf was given, and in which step. `freed` holds the
    earlier steps' functions whose saved tensors this step's failed backward found freed.
    `like` is the step whose graph this one repeats (its records are that step's, moved to
    this one, with this step's stamps and leaf gradients), when it was recorded as such.
    """

    snapshot: Snapshot
    first: int
    children: tuple[tuple[tuple[int, int], ...], ...]
    whole: bool = True
    refs: dict[int, Key] = field(default_factory=dict)
    roots: tuple[int, ...] = ()
    tensors: tuple[tuple[int, Key, int], ...] = ()
    deep_leaves: dict[Key, int] = field(default_factory=dict)
    deep_grads: dict[tuple, GradStat | None] = field(default_factory=dict)
    first_names: Mapping[Key, tuple[int, str]] = field(default_factory=dict)
    freed: frozenset[Key] = frozenset()
    like: int | None = None


Inputs = tuple[tuple["Key | None", int], ...]
Id = TypeVar("Id", bound=Hashable)


def preorder(roots: Sequence[Id], inputs: Callable[[Id], Sequence[tuple[Id | None, int]]]) -> list[Id]:
    """Functions in depth-first pre-order from `roots`, each one's inputs (function or None,
    output number) in slot order: the order graphscope numbers a step's functions in."""
    seen: set[Id] = set()
    order: list[Id] = []
    stack = list(roots)[::-1]
    pop, push, visit, mark = stack.pop, stack.append, order.append, seen.add
    while stack:
        node = pop()
        if node in seen:
            continue
        mark(node)
        visit(node)
        for child, _ in reversed(inputs(node)):
            if child is not None and child not in seen:
                push(child)
    return order

_new = tuple.__new__  # records from a C call: most of a rebuild's cost is making them


@dataclass
class Learned:
    """What rebuilding steps learns of functions captured earlier, which never changes: each
    one's inputs as first-capture keys, its id prefix and record, and how many distinct
    functions it reads. Every step rebuilt from the same partials shares it."""

    inputs: dict[Key, Inputs] = field(default_factory=dict)
    captured: dict[Key, tuple[str, Node | None]] = field(default_factory=dict)
    fan_in: dict[Key, int] = field(default_factory=dict)


class _Rebuild:
    """The full graph of one step, walked over the partials instead of the autograd graph,
    with what `Learned` holds of the functions earlier steps captured."""

    def __init__(self, partials: Sequence[Partial], step: int, learned: Learned):
        self.partials = partials
        self.step = step
        self.own = partials[step]
        self.inputs_of = learned.inputs
        self.captured = learned.captured
        self.fan_in = learned.fan_in
        refs = self.own.refs
        self.local = {refs.get(fi, (step, fi)): fi for fi in range(len(self.own.children))}

    def inputs(self, key: Key) -> Inputs:
        """A function's inputs in slot order, as first-capture keys (None for a missing one)."""
        found = self.inputs_of.get(key)
        if found is None:
            step, fi = key
            refs = self.partials[step].refs
            found = tuple((None if child < 0 else refs.get(child, (step, child)), nr)
                          for child, nr in self.partials[step].children[fi])
            self.inputs_of[key] = found
        return found

    def order(self, wanted: set[Key]) -> tuple[list[Key], set[tuple[Key, int]]]:
        """Depth-first pre-order from the outputs' functions, as the walker numbers them, and
        which outputs of the `wanted` functions some function reads."""
        refs, step = self.own.refs, self.step
        order = preorder([refs.get(fi, (step, fi)) for fi in self.own.roots], self.inputs)
        inputs = self.inputs
        # A step's walk captures a new function's inputs with it, unless an earlier step has:
        # no function reads one first captured after it, so only those captured no earlier
        # than the earliest wanted one can read a wanted one.
        earliest = self.earliest(wanted)
        readers = [key for key in order if key[0] >= earliest]
        read = {(child, nr) for key in readers for child, nr in inputs(key) if child in wanted}
        return order, read

    def earliest(self, wanted: set[Key]) -> int:
        """The earliest step that first captured one of `wanted`: only functions captured then
        or later can read one."""
        return min((key[0] for key in wanted), default=self.step)

    def named(self, key: Key) -> tuple[str, Node]:
        """The id prefix and this step's record of a function (see `record`); what an earlier
        step captured is looked up once for every step rebuilt from the same partials."""
        if key in self.local:
            node = self.own.snapshot.nodes[self.own.first + self.local[key]]
            return ("leaf" if node.kind is NodeKind.LEAF else node.id.rsplit("_", 1)[0]), node
        found = self.captured.get(key)
        if found is None:
            step, fi = key
            node = self.partials[step].snapshot.nodes[self.partials[step].first + fi]
            found = ("leaf", None) if node.kind is NodeKind.LEAF else (node.id.rsplit("_", 1)[0], node)
            self.captured[key] = found
        prefix, node = found
        if node is None:
            return prefix, self.record(key)
        return prefix, (node._replace(saved_freed=True, saved_bytes=0) if key in self.own.freed else node)

    def record(self, key: Key) -> Node:
        """This step's record of a function; else its first capture's record, with the name
        and gradients of this step where it is a leaf."""
        own = self.own
        if key in self.local:
            return own.snapshot.nodes[own.first + self.local[key]]
        step, fi = key
        node = self.partials[step].snapshot.nodes[self.partials[step].first + fi]
        if node.kind is not NodeKind.LEAF:
            return node._replace(saved_freed=True, saved_bytes=0) if key in own.freed else node
        now = own.snapshot.nodes[own.deep_leaves[key]] if key in own.deep_leaves else node._replace(name=None, grad=None)
        name = now.name
        first = own.first_names.get(key)
        if name is None and first is not None and first[0] <= self.step:
            name = f"{first[1]} (from step {node.first_step})"
        return node._replace(name=name, shape=now.shape, dtype=now.dtype, device=now.device, is_leaf=now.is_leaf,
                             requires_grad=now.requires_grad, retains_grad=now.retains_grad, grad=now.grad,
                             grad_step=own.deep_grads.get(("step", key)))

    def records(self) -> tuple[tuple[Node, ...], tuple[Edge, ...]]:
        """The whole step: outputs, functions in walk order, named tensors, and every edge."""
        own = self.own
        order, read = self.order({key for _, key, _ in own.tensors})
        position = dict(zip(order, range(own.first, own.first + len(order))))
        counters: dict[str, int] = {}
        nodes = list(own.snapshot.nodes[: own.first])
        named = self.named
        for key in order:
            prefix, node = named(key)
            count = counters.get(prefix, 0)
            counters[prefix] = count + 1
            nodes.append(_new(Node, (f"{prefix}_{count}", *node[1:])))
        renamed = {own.snapshot.nodes[own.first + fi].id: nodes[position[key]].id for key, fi in self.local.items()}
        renamed.update((node.id, node.id) for node in nodes[: own.first])
        tensor_at = {}
        for key, nr, node in self._placed(position, read, counters):
            if node < own.first:
                tensor_at[(key, nr)] = node
                continue
            tensor = own.snapshot.nodes[node]
            renamed[tensor.id] = f"tensor_{counters['tensor'] - 1}"
            tensor_at[(key, nr)] = len(nodes)
            nodes.append(tensor._replace(id=renamed[tensor.id]))
        return tuple(nodes), self._edges(order, position, tensor_at, nodes, renamed)

    def digest(self) -> Digest:
        """The whole step summed up without making its function records (see Digest)."""
        own, step = self.own, self.step
        order, read = self.order({key for _, key, _ in own.tensors})
        position = dict(zip(order, range(own.first, own.first + len(order))))
        counters: dict[str, int] = {}
        nodes = list(own.snapshot.nodes[: own.first])
        tensors = [node for node in nodes if node.kind in DIGESTED]
        named, get, leaf, append = self.named, counters.get, NodeKind.LEAF, nodes.append
        for key in order:
            prefix, node = named(key)
            count = get(prefix, 0)
            counters[prefix] = count + 1
            if node.kind is leaf:
                node = _new(Node, (f"{prefix}_{count}", *node[1:]))
                tensors.append(node)
            append(node)
        tensor_at = {}
        for key, nr, node in self._placed(position, read, counters):
            tensor_at[(key, nr)] = node
            if node >= own.first:
                tensors.append(_new(Node, (f"tensor_{counters['tensor'] - 1}", *own.snapshot.nodes[node][1:])))
                append(tensors[-1])
        carried = [n for n in nodes if n.first_step is not None and n.first_step < step and n.kind is not leaf]
        gradients = [e.grad for e in own.snapshot.edges if e.grad is not None]
        gradients += [stat for key, stat in own.deep_grads.items() if key[0] != "step" and stat is not None]
        return Digest(len(nodes), len(tensor_at) + self._edge_count(order, tensor_at), len(carried),
                      frozenset({n.first_step for n in carried}), held_bytes(carried),
                      frozenset({n.source for n in nodes} - {None, ""}), tuple(tensors), tuple(gradients))

    def _placed(self, position: dict[Key, int], read: set[tuple[Key, int]],
                counters: dict[str, int]) -> Iterator[tuple[Key, int, int]]:
        """Each output and named tensor the graph shows, as (producer, output number, its node
        in this step's partial): outputs stay first; the named tensors that the step reads
        follow the functions, ordered by their producer, each counted as a `tensor_K` id."""
        own = self.own
        shown: set[tuple[Key, int]] = set()
        named = []
        for node, key, nr in own.tensors:
            if node < own.first:
                if (key, nr) not in shown:
                    shown.add((key, nr))
                    yield key, nr, node
            elif (key, nr) in read and (key, nr) not in shown:
                named.append((position[key], nr, key, node))
        for _, nr, key, node in sorted(named, key=lambda item: item[:2]):
            counters["tensor"] = counters.get("tensor", 0) + 1
            yield key, nr, node

    def _edge_count(self, order: list[Key], tensor_at: dict[tuple[Key, int], int]) -> int:
        """How many edges `_edges` makes into functions: one per distinct input, a tensor node
        counting for each output it stands for (only functions captured no earlier than the
        tensors' producers can read one)."""
        producers = {key for key, _ in tensor_at}
        earliest = self.earliest(producers)
        inputs, fan_in, count = self.inputs, self.fan_in, 0
        for key in order:
            if key[0] >= earliest:
                count += len({(child, nr) if child in producers and (child, nr) in tensor_at else child
                              for child, nr in inputs(key) if child is not None})
                continue
            found = fan_in.get(key)
            if found is None:
                found = fan_in[key] = len({child for child, _ in inputs(key) if child is not None})
            count += found
        return count

    def _edges(self, order: list[Key], position: dict[Key, int], tensor_at: dict[tuple[Key, int], int],
               nodes: list[Node], renamed: dict[str, str]) -> tuple[Edge, ...]:
        """Producer -> tensor node -> consumer edges, with the gradients this step recorded:
        from this step's own edges, or from those it followed into the history."""
        ids = [node.id for node in nodes]
        walked = {(renamed[e.source], renamed[e.target]): e.grad
                  for e in self.own.snapshot.edges if e.source in renamed and e.target in renamed}
        deep = self.own.deep_grads
        edges = []
        for (key, nr), node in tensor_at.items():
            pair = (ids[position[key]], ids[node])
            edges.append(_new(Edge, (*pair, walked[pair] if pair in walked else deep.get(("out", key, nr)))))
        producers = {key for key, _ in tensor_at}
        own_step, inputs, append = self.step, self.inputs, edges.append
        for key in order:
            target = ids[position[key]]
            sources: dict[Any, int] = {}
            for child, nr in inputs(key):
                if child is None:
                    continue
                if child in producers and (child, nr) in tensor_at:
                    sources.setdefault((child, nr), tensor_at[child, nr])
                else:
                    sources.setdefault(child, position[child])
            if key[0] == own_step:
                for at in sources.values():
                    append(_new(Edge, (ids[at], target, walked.get((ids[at], target)))))
            else:
                for source, at in sources.items():
                    append(_new(Edge, (ids[at], target, deep.get((source, key)))))
        return tuple(edges)


def rebuild(partials: Sequence[Partial], step: int, learned: Learned | None = None,
            loss_scale: float | None = None) -> Snapshot:
    """The full Snapshot of `step`: its own partial when it holds everything, else rebuilt
    when its records are first read, and digested without them (`learned` carries what
    earlier rebuilds learned of the same partials)."""
    own = partials[step].snapshot
    scale = own.loss_scale if loss_scale is None else loss_scale
    if partials[step].whole:
        return own if scale == own.loss_scale else replace(own, loss_scale=scale)
    rebuilt = _Rebuild(partials, step, Learned() if learned is None else learned)
    return Snapshot.deferred(rebuilt.records, own.step, own.call, own.notes, own.gradients, scale, rebuilt.digest)


def kept(snapshots: Sequence[Snapshot]) -> Sequence[Snapshot]:
    """The steps of a run, each kept once read (for a command that reads every step several
    times): a session's steps still share their history, anything else becomes a list."""
    return snapshots.kept() if isinstance(snapshots, Steps) else list(snapshots)


class Steps(Sequence[Snapshot]):
    """The steps of a session as full Snapshots, rebuilt when read (the latest is kept)."""

    def __init__(self, partials: Sequence[Partial]):
        self._partials = partials
        self._learned = Learned()
        self._cached: tuple[int, Snapshot] | None = None
        self._kept: dict[int, Snapshot] | None = None
        self.scales: dict[int, float] = {}  # the loss scale of steps a GradScaler scaled

    def kept(self) -> Steps:
        """These steps, each kept once rebuilt (for a command that reads every step several times)."""
        steps = Steps(self._partials)
        steps.scales, steps._kept = self.scales, {}
        return steps

    @property
    def partials(self) -> Sequence[Partial]:
        """What each step captured, as the steps are rebuilt from."""
        return self._partials

    def __len__(self) -> int:
        return len(self._partials)

    @overload
    def __getitem__(self, step: int) -> Snapshot: ...

    @overload
    def __getitem__(self, step: slice) -> list[Snapshot]: ...

    def __getitem__(self, step: int | slice) -> Snapshot | list[Snapshot]:
        if isinstance(step, slice):
            return [self[i] for i in range(*step.indices(len(self)))]
        if step < 0:
            step += len(self)
        if not 0 <= step < len(self):
            raise IndexError(f"step {step} out of range: {len(self)} step(s) captured")
        if self._kept is not None and step in self._kept:
            return self._kept[step]
        if self._cached is None or self._cached[0] != step:
            snapshot = rebuild(self._partials, step, self._learned, self.scales.get(step))
            self._cached = (step, snapshot)
            if self._kept is not None:
                self._kept[step] = snapshot
        return self._cached[1]

    def __iter__(self) -> Iterator[Snapshot]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same snapshots, as the list it stands for would be."""
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{len(self)} captured step(s)>"
