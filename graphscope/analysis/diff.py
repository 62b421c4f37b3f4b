"""Differences between two snapshots: nodes added, removed, carried over, names that moved.

Identity first: a node captured in an earlier step is the same node wherever it appears (its
`origin`; a module box is its module call), so history carried from step to step is never
counted as new. Only the nodes that are new in each of the two steps are matched by their
shape (kind, op, name and source line, in walk order), so two forward passes of the same
model match node for node; a carried node is never paired with a new one. Torch-free: it
works on saved runs as well as live ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Mapping

from graphscope.model import Node, NodeKind, Snapshot, base_name


@dataclass(frozen=True)
class KindChange:
    """A name the user kept whose tensor changed kind, e.g. `w`: leaf -> tensor (SubBackward0)."""

    name: str
    before: str
    after: str


@dataclass(frozen=True)
class Moved:
    """A variable that names another tensor now: `w` after `w = w - lr * w.grad` (the ids of
    the tensor nodes it named in the old step and names in the new one)."""

    name: str
    old: str
    new: str


@dataclass(frozen=True)
class SnapshotDiff:
    """What changed from snapshot `old` to snapshot `new`; `matched` maps each old node id to
    the id of the same node in the new snapshot."""

    old: Snapshot
    new: Snapshot
    added: tuple[str, ...]
    removed: tuple[str, ...]
    common: tuple[str, ...]
    carried: tuple[str, ...]
    edges_added: tuple[tuple[str, str], ...]
    edges_removed: tuple[tuple[str, str], ...]
    kind_changes: tuple[KindChange, ...]
    moved: tuple[Moved, ...] = ()
    matched: Mapping[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when the two graphs have the same structure."""
        return not (self.added or self.removed or self.edges_added or self.edges_removed or self.kind_changes)

    def summary(self) -> str:
        """A few lines for the terminal."""
        old, new = self.old, self.new
        lines = [f"step {old.step} ({len(old.nodes)} nodes) -> step {new.step} ({len(new.nodes)} nodes): "
                 f"{len(self.added)} added, {len(self.removed)} removed, {len(self.carried)} carried over, "
                 f"{len(self.common)} in both"]
        carried = set(self.carried)
        lines += [f"  + {_describe(new[i])}" + (f" (made in step {new[i].first_step})" if i in carried else "")
                  for i in self.added]
        lines += [f"  - {_describe(old[i])}" for i in self.removed]
        lines += [f"  ~ {c.name}: {c.before} -> {c.after}" for c in self.kind_changes]
        lines += [f"  ~ {m.name} names a new tensor: {_made(new[m.new])}" for m in self.moved]
        if self.carried:
            steps = sorted({new[i].first_step for i in self.carried})
            also_added = len(carried.intersection(self.added))
            lines.append(f"  carried over from earlier steps ({', '.join(map(str, steps))}): "
                         f"{len(self.carried)} nodes" + (f", {also_added} of them added above (made earlier, "
                                                         f"not in step {old.step}'s graph)" if also_added else ""))
        if self.empty:
            lines.append("  same structure")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _describe(node: Node) -> str:
    """`SubBackward0 (SubBackward0_1) @ train.py:30`."""
    text = f"{node.title} ({node.id})"
    return text + (f" @ {node.source}" if node.source else "")


def _made(node: Node) -> str:
    """`the output of SubBackward0 made at train.py:30 in step 4`."""
    where = f" at {node.source}" if node.source else ""
    when = f" in step {node.first_step}" if node.first_step is not None else ""
    return f"the output of {node.op or 'a leaf'} made{where}{when} ({node.id})"


def _kind_text(node: Node) -> str:
    """`leaf` or `tensor (SubBackward0)`."""
    if node.kind is NodeKind.LEAF:
        return "leaf"
    return f"{node.kind.value} ({node.op})" if node.op else node.kind.value


def identity(node: Node) -> Hashable | None:
    """What makes a node the same node in every step of a run: where it was first captured,
    or for a module box the module call it stands for; None when nothing says."""
    if node.origin is not None:
        return ("origin", node.origin)
    if node.kind is NodeKind.MODULE and node.calls:
        return ("call", node.calls[-1][1])
    return None


def _same_kind(a: Node, b: Node) -> bool:
    """Nodes that can be one node: the same kind, and for functions the same op."""
    return a.kind is b.kind and (a.op == b.op or a.kind is not NodeKind.FUNCTION)


def _shape(node: Node) -> tuple:
    """What two new nodes of two steps share when they play the same part: a function its op
    and source line, a tensor its kind and variable name."""
    if node.kind is NodeKind.FUNCTION:
        return node.kind, node.op, node.source
    return node.kind, base_name(node.name)


def _by_identity(old: Snapshot, new: Snapshot) -> dict[str, str]:
    """Old id -> new id of the nodes that are the same node in both."""
    known = {key: node for node in old.nodes if (key := identity(node)) is not None}
    matched = {}
    for node in new.nodes:
        twin = known.get(identity(node)) if identity(node) is not None else None
        if twin is not None and _same_kind(twin, node) and twin.id not in matched:
            matched[twin.id] = node.id
    return matched


def _by_shape(old: Snapshot, new: Snapshot, matched: dict[str, str]) -> None:
    """Pair the nodes still unmatched that are new in their own step, by shape in walk order."""
    paired = set(matched.values())
    waiting: dict[tuple, list[str]] = {}
    for node in reversed(old.nodes):
        if node.id not in matched and not node.carried_over(old.step):
            waiting.setdefault(_shape(node), []).append(node.id)
    for node in new.nodes:
        if node.id in paired or node.carried_over(new.step):
            continue
        candidates = waiting.get(_shape(node))
        if candidates:
            matched[candidates.pop()] = node.id


def _moved(old: Snapshot, new: Snapshot, matched: dict[str, str]) -> tuple[Moved, ...]:
    """Variables whose unmatched tensor node in the new step has a namesake in the old one."""
    paired = set(matched.values())
    before = {n.name: n.id for n in old.nodes if n.kind is NodeKind.TENSOR and n.name}
    return tuple(Moved(n.name, before[n.name], n.id) for n in new.nodes
                 if n.kind is NodeKind.TENSOR and n.id not in paired and n.name in before)


def _kind_changes(old: Snapshot, new: Snapshot) -> tuple[KindChange, ...]:
    """Names present in both snapshots whose tensor is now of another kind (leaf -> non-leaf)."""
    before = {n.name: n for n in old.nodes if n.name and n.is_tensor}
    changes = []
    for node in new.nodes:
        earlier = before.get(node.name) if node.name else None
        if earlier is not None and earlier.is_leaf != node.is_leaf:
            changes.append(KindChange(node.name, _kind_text(earlier), _kind_text(node)))
    return tuple(changes)


def _labels(snapshot: Snapshot, matched_ids: set[str], skip: set[str]) -> set[str]:
    """Tensor nodes that are only a label on an output still in both graphs: unmatched (and not
    a moved variable), while the function that produced it is matched."""
    return {n.id for n in snapshot.of_kind(NodeKind.TENSOR) if n.id not in matched_ids and n.id not in skip
            and any(p in matched_ids for p in snapshot.inputs_of(n.id))}


def _edges_through(snapshot: Snapshot, labels: set[str]) -> list[tuple[str, str]]:
    """The snapshot's edges, with the label nodes seen through (producer -> user)."""
    edges = []
    for edge in snapshot.edges:
        if edge.source in labels:
            continue
        if edge.target in labels:
            edges += [(edge.source, user) for user in snapshot.users_of(edge.target)]
        else:
            edges.append((edge.source, edge.target))
    return edges


def diff(old: Snapshot, new: Snapshot) -> SnapshotDiff:
    """Compare two snapshots of one run, or of two runs."""
    matched = _by_identity(old, new)
    _by_shape(old, new, matched)
    moved = _moved(old, new, matched)
    paired = set(matched.values())
    old_labels = _labels(old, set(matched), {m.old for m in moved})
    new_labels = _labels(new, paired, {m.new for m in moved})
    old_edges = _edges_through(old, old_labels)
    new_edges = _edges_through(new, new_labels)
    old_seen = {(matched.get(s), matched.get(t)) for s, t in old_edges}
    new_seen = set(new_edges)
    skip_old, skip_new = old_labels | {m.old for m in moved}, new_labels | {m.new for m in moved}
    return SnapshotDiff(
        old=old,
        new=new,
        added=tuple(n.id for n in new.nodes if n.id not in paired and n.id not in skip_new),
        removed=tuple(n.id for n in old.nodes if n.id not in matched and n.id not in skip_old),
        common=tuple(n.id for n in new.nodes if n.id in paired),
        carried=tuple(n.id for n in new.nodes if n.carried_over(new.step)),
        edges_added=tuple(pair for pair in new_edges if pair not in old_seen),
        edges_removed=tuple((s, t) for s, t in old_edges if (matched.get(s), matched.get(t)) not in new_seen),
        kind_changes=_kind_changes(old, new),
        moved=moved,
        matched=matched,
    )
