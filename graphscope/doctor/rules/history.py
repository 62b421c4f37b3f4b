"""A parameter turned into a non-leaf by an update that autograd recorded."""

from __future__ import annotations

from typing import Iterator

from graphscope.doctor.evidence import (Evidence, failed_on_none_grad, failure_sentence, rebound_parameter, rule,
                                        upstream)
from graphscope.model import Finding, Node, NodeKind, Snapshot, base_name


def _former_leaf(snapshot: Snapshot, node: Node) -> Node | None:
    """The leaf a non-leaf variable used to hold and was computed from, if there is one."""
    if node.is_leaf or not node.name:
        return None
    leaves = [leaf for leaf in snapshot.of_kind(NodeKind.LEAF)
              if leaf.name != node.name and base_name(leaf.name) == node.name and leaf.requires_grad]
    if not leaves:
        return None
    computed_from = upstream(snapshot, node.id)
    return next((leaf for leaf in leaves if leaf.id in computed_from), None)


@rule("non-leaf-parameter")
def non_leaf_parameter(evidence: Evidence) -> Iterator[Finding]:
    """A variable that held a leaf requiring grad now holds a non-leaf computed from it."""
    reported = set()
    for snapshot in evidence.snapshots:
        for node in snapshot.of_kind(NodeKind.TENSOR):
            leaf = None if node.name in reported else _former_leaf(snapshot, node)
            if leaf is not None:
                reported.add(node.name)
                yield _non_leaf_finding(evidence, snapshot, node, leaf)
    rebound = rebound_parameter(evidence)
    if rebound is not None and rebound[0] not in reported:
        yield _rebound_finding(evidence, *rebound)


def _rebound_finding(evidence: Evidence, name: str, location: str) -> Finding:
    """The script failed on `name.grad` right after an update that no step captured yet made
    `name` a non-leaf."""
    last = evidence.snapshots[-1]
    leaf = next(n for n in last.of_kind(NodeKind.LEAF) if base_name(n.name) == name)
    message = (f"`{name}` was a leaf tensor requiring grad in step {last.step}, but {evidence.at(location)} then "
               f"replaced it with a result computed from it, outside torch.no_grad(): `{name}` is no longer a "
               f"leaf, so its .grad is None." + failure_sentence(evidence))
    fix = (f"keep `{name}` a leaf: update it in place without recording the update, "
           f"`with torch.no_grad(): {name} -= lr * {name}.grad` (or through `{name}.data`), "
           f"then zero {name}.grad before the next backward.")
    return Finding("non-leaf-parameter", "error", message, fix, location, last.step, (leaf.id,), True)


def _non_leaf_finding(evidence: Evidence, snapshot: Snapshot, node: Node, leaf: Node) -> Finding:
    """The finding for variable `node.name`, which stopped holding `leaf`."""
    name = node.name
    outcome = (f"retain_grad() keeps {name}.grad filled, but every new graph drags the update history along"
               if node.retains_grad else f"backward() will leave {name}.grad None")
    message = (f"`{name}` was a leaf tensor requiring grad in step {leaf.first_step}, but "
               f"{evidence.at(node.source)} then replaced it with a {node.op} result computed from that "
               f"leaf, outside torch.no_grad(): `{name}` is no longer a leaf, so {outcome}.")
    explains = failed_on_none_grad(evidence, [name])
    if explains:
        message += failure_sentence(evidence)
    fix = (f"keep `{name}` a leaf: update it in place without recording the update, "
           f"`with torch.no_grad(): {name} -= lr * {name}.grad` (or through `{name}.data`), "
           f"then zero {name}.grad before the next backward.")
    return Finding("non-leaf-parameter", "error", message, fix, node.source, snapshot.step,
                   (node.id, leaf.id), explains)
