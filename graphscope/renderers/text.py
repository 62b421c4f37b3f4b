"""Snapshot -> a text tree for the terminal: from each output back to the leaves."""

from __future__ import annotations

from graphscope.model import Node, NodeKind, Snapshot
from graphscope.model.snapshot import where_made
from graphscope.renderers import labels


def node_line(node: Node, step: int, call: str = "backward", source: str | None = None) -> str:
    """One line: name or op, kind, shape, gradients, where it was made (`source`, as
    `where_made` shows it, else its own) and since when."""
    if node.kind is NodeKind.FUNCTION:
        parts = [node.op or node.id]
    elif node.kind is NodeKind.COMPILED:
        parts = [node.op or node.id, f"[{', '.join(labels.region_lines(node))}]"]
    else:
        parts = [node.name or node.op or node.id, f"[{labels.kind_text(node)}]", labels.tensor_text(node)]
        parts += labels.grad_lines(node, call)
    if source or node.source:
        parts.append(f"@ {source or node.source}")
    if node.carried_over(step):
        parts.append(f"(carried over from step {node.first_step})")
    return "  ".join(parts)


def text_tree(snapshot: Snapshot) -> str:
    """The graph as an indented tree, walking backward from the outputs with an explicit stack."""
    lines = [f"{len(snapshot.nodes)} nodes, {len(snapshot.edges)} edges · step {snapshot.step} ({snapshot.call})"]
    shown: set[str] = set()
    roots = [node.id for node in snapshot.of_kind(NodeKind.OUTPUT)]
    stack = [(root, "", "") for root in reversed(roots)]
    while stack:
        node_id, prefix, branch = stack.pop()
        again = node_id in shown
        lines.append(prefix + branch + node_line(snapshot[node_id], snapshot.step, snapshot.call, where_made(snapshot[node_id], snapshot)[0]) + ("  (see above)" if again and snapshot.inputs_of(node_id) else ""))
        if again:
            continue
        shown.add(node_id)
        child_prefix = prefix + ("" if not branch else ("   " if branch == "└─ " else "│  "))
        children = snapshot.inputs_of(node_id)
        for i in range(len(children) - 1, -1, -1):
            stack.append((children[i], child_prefix, "└─ " if i == len(children) - 1 else "├─ "))
    lines.extend(f"note: {note}" for note in snapshot.notes)
    return "\n".join(lines)
