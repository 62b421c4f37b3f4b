"""Differences between two snapshots: nodes added, removed, carried over, tensors that changed kind.

Nodes match by their structural id (op plus per-op counter in walk order), so two forward
passes of the same model match node for node, and so do two steps of one run whose graph
did not change shape. Torch-free: it works on saved runs as well as live ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphscope.model import Node, NodeKind, Snapshot


@dataclass(frozen=True)
class KindChange:
    """A name the user kept whose tensor changed kind, e.g. `w`: leaf -> tensor (SubBackward0)."""

    name: str
    before: str
    after: str


@dataclass(frozen=True)
class SnapshotDiff:
    """What changed from snapshot `old` to snapshot `new`."""

    old: Snapshot
    new: Snapshot
    added: tuple[str, ...]
    removed: tuple[str, ...]
    common: tuple[str, ...]
    carried: tuple[str, ...]
    edges_added: tuple[tuple[str, str], ...]
    edges_removed: tuple[tuple[str, str], ...]
    kind_changes: tuple[KindChange, ...]

    @property
    def empty(self) -> bool:
        """True when the two graphs have the same structure."""
        return not (self.added or self.removed or self.edges_added or self.edges_removed or self.kind_changes)

    def summary(self) -> str:
        """A few lines for the terminal."""
        old, new = self.old, self.new
        lines = [f"step {old.step} ({len(old.nodes)} nodes) -> step {new.step} ({len(new.nodes)} nodes): "
                 f"{len(self.added)} added, {len(self.removed)} removed, {len(self.carried)} carried over"]
        lines += [f"  + {_describe(new[i])}" for i in self.added]
        lines += [f"  - {_describe(old[i])}" for i in self.removed]
        lines += [f"  ~ {c.name}: {c.before} -> {c.after}" for c in self.kind_changes]
        if self.carried:
            steps = sorted({new[i].first_step for i in self.carried})
            lines.append(f"  carried over from earlier steps ({', '.join(map(str, steps))}): "
                         f"{len(self.carried)} nodes")
        if self.empty:
            lines.append("  same structure")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _describe(node: Node) -> str:
    """`SubBackward0 (SubBackward0_1) @ train.py:30`."""
    text = f"{node.title} ({node.id})"
    return text + (f" @ {node.source}" if node.source else "")


def _matches(a: Node, b: Node) -> bool:
    """Same structural position: same id and kind, and for functions the same op."""
    return a.kind is b.kind and (a.op == b.op or a.kind is not NodeKind.FUNCTION)


def _kind_text(node: Node) -> str:
    """`leaf` or `tensor (SubBackward0)`."""
    if node.kind is NodeKind.LEAF:
        return "leaf"
    return f"{node.kind.value} ({node.op})" if node.op else node.kind.value


def _kind_changes(old: Snapshot, new: Snapshot) -> tuple[KindChange, ...]:
    """Names present in both snapshots whose tensor is now of another kind (leaf -> non-leaf)."""
    before = {n.name: n for n in old.nodes if n.name and n.is_tensor}
    changes = []
    for node in new.nodes:
        earlier = before.get(node.name) if node.name else None
        if earlier is not None and earlier.is_leaf != node.is_leaf:
            changes.append(KindChange(node.name, _kind_text(earlier), _kind_text(node)))
    return tuple(changes)


def diff(old: Snapshot, new: Snapshot) -> SnapshotDiff:
    """Compare two snapshots of one run or of two runs."""
    old_ids = {n.id: n for n in old.nodes}
    common = tuple(n.id for n in new.nodes if n.id in old_ids and _matches(old_ids[n.id], n))
    same = set(common)
    old_edges = {(e.source, e.target) for e in old.edges}
    new_edges = {(e.source, e.target) for e in new.edges}
    return SnapshotDiff(
        old=old,
        new=new,
        added=tuple(n.id for n in new.nodes if n.id not in same),
        removed=tuple(n.id for n in old.nodes if n.id not in same),
        common=common,
        carried=tuple(n.id for n in new.nodes if n.carried_over(new.step)),
        edges_added=tuple((e.source, e.target) for e in new.edges if (e.source, e.target) not in old_edges),
        edges_removed=tuple((e.source, e.target) for e in old.edges if (e.source, e.target) not in new_edges),
        kind_changes=_kind_changes(old, new),
    )
