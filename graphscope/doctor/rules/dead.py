"""Dead gradients: every parameter's gradient exactly zero in every step, so training changes
nothing (a loss that cannot change, such as cross-entropy over a single class)."""

from __future__ import annotations

from typing import Iterator

from graphscope.doctor.evidence import Evidence, backward_order, forward_op, names_text, rule, steps_text
from graphscope.model import Finding, Node, NodeKind, Snapshot, base_name


def _parameters(snapshot: Snapshot) -> list[Node]:
    """The leaves requiring grad that this step's backward sent a gradient to."""
    return [n for n in snapshot.of_kind(NodeKind.LEAF) if n.requires_grad and n.grad_step is not None]


def _all_zero(snapshot: Snapshot) -> bool:
    """True when the step reached parameters and every one got a gradient of exactly zero."""
    parameters = _parameters(snapshot)
    return bool(parameters) and all(n.grad_step.norm == 0 and not n.grad_step.nonfinite for n in parameters)


def zero_origin(snapshot: Snapshot) -> Node | None:
    """The first node, in backward order, that received a non-zero gradient and sent on only zeros."""
    for node in backward_order(snapshot):
        received = [e.grad for e in snapshot.edges_out(node.id) if e.grad is not None]
        sent = [e.grad for e in snapshot.edges_in(node.id) if e.grad is not None]
        if sent and any(g.norm > 0 for g in received) and all(g.norm == 0 for g in sent):
            return node
    return None


@rule("dead-grad")
def dead_grad(evidence: Evidence) -> Iterator[Finding]:
    """Every parameter's gradient exactly zero in every backward step."""
    steps = [s for s in evidence.snapshots if s.call == "backward" and _parameters(s)]
    if not steps or not all(_all_zero(s) for s in steps):
        return
    first = steps[0]
    origin = zero_origin(first)
    names = names_text(sorted({base_name(n.name) or n.id for n in _parameters(first)}))
    where = (f": {origin.op}, the backward of the {forward_op(origin.op)} at {evidence.at(origin.source)}, "
             "received a non-zero gradient and sent on only zeros" if origin is not None else "")
    message = (f"every gradient of {names} was exactly zero in {steps_text([s.step for s in steps])}, so "
               f"training cannot change them; the gradient died on its way back{where}.")
    fix = ("check that the loss can change with the parameters: a cross-entropy over a single class (logits "
           "of shape [N, 1]) is always 0, use a sigmoid and BCEWithLogitsLoss for two classes; a ReLU or a "
           "clamp that is off everywhere passes no gradient either.")
    yield Finding("dead-grad", "warning", message, fix, origin.source if origin is not None else None, first.step,
                  (origin.id,) if origin is not None else ())
