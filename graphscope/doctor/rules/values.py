"""Where a NaN or Inf gradient first appeared."""

from __future__ import annotations

from typing import Iterator

from graphscope.doctor.evidence import Evidence, backward_order, forward_op, rule
from graphscope.model import Finding, GradStat, Node, NodeKind, Snapshot, base_name


_OP_HINTS = {
    "SqrtBackward0": ("sqrt's derivative 1/(2·sqrt(x)) is infinite at x = 0",
                      "keep the input away from 0 (`torch.sqrt(x + 1e-12)`), or use torch.linalg.vector_norm, "
                      "whose gradient at 0 is defined"),
    "LogBackward0": ("log's derivative 1/x is infinite at x = 0",
                     "clamp the input: `torch.log(x.clamp_min(1e-12))`"),
    "DivBackward0": ("the denominator is 0", "add an epsilon to the denominator, or mask the zero entries"),
    "PowBackward0": ("a fractional or negative power has an infinite derivative at 0",
                     "keep the base away from 0, e.g. `(x + 1e-12) ** p`"),
    "RsqrtBackward0": ("rsqrt's derivative is infinite at 0", "add an epsilon: `torch.rsqrt(x + 1e-12)`"),
    "ReciprocalBackward0": ("1/x has an infinite derivative at 0", "add an epsilon to x"),
    "AcosBackward0": ("acos' derivative is infinite at ±1", "clamp the input to (-1 + 1e-6, 1 - 1e-6)"),
    "AsinBackward0": ("asin's derivative is infinite at ±1", "clamp the input to (-1 + 1e-6, 1 - 1e-6)"),
}


def _bad(stat: GradStat | None) -> bool:
    """True for a gradient holding NaN or Inf."""
    return stat is not None and stat.nonfinite > 0


def nonfinite_origin(snapshot: Snapshot) -> Node | None:
    """The first node, in backward order, that received finite gradients and sent on NaN/Inf."""
    if not any(_bad(edge.grad) for edge in snapshot.edges):
        return None
    for node in backward_order(snapshot):
        # Backward runs against the forward edges: a node receives along its edges out, sends along its edges in.
        sent, received = snapshot.edges_in(node.id), snapshot.edges_out(node.id)
        if any(_bad(e.grad) for e in sent) and not any(_bad(e.grad) for e in received):
            return node
    return None


@rule("nonfinite-grad")
def nonfinite_grad(evidence: Evidence) -> Iterator[Finding]:
    """Where the first NaN/Inf gradient appeared, in the first step that has one."""
    for snapshot in evidence.snapshots:
        origin = nonfinite_origin(snapshot)
        if origin is not None:
            yield _nonfinite_finding(evidence, snapshot, origin)
            return


def _nonfinite_finding(evidence: Evidence, snapshot: Snapshot, origin: Node) -> Finding:
    """The finding for the node where NaN/Inf entered the backward pass."""
    count = max(e.grad.nonfinite for e in snapshot.edges_in(origin.id) if _bad(e.grad))
    why, fix = _OP_HINTS.get(origin.op or "", (
        "", "guard the input of this op (clamp it or add an epsilon); torch.autograd.detect_anomaly() "
            "stops at the same op"))
    reached = [base_name(n.name) or n.id for n in snapshot.of_kind(NodeKind.LEAF) if _bad(n.grad_step)]
    if origin.kind is NodeKind.FUNCTION:
        what = f"{origin.op}, the backward of the {forward_op(origin.op)} at {evidence.at(origin.source)},"
    else:
        what = f"`{origin.title}`"
    message = (f"in step {snapshot.step} the first NaN/Inf gradient in backward order comes out of {what} "
               f"which received finite gradients and passed on {count} NaN/Inf"
               + (f" ({why})" if why else "")
               + (f"; it reaches {', '.join(f'{n}.grad' for n in reached)}" if reached else "") + ".")
    return Finding("nonfinite-grad", "error", message, fix + ".", origin.source, snapshot.step,
                   (origin.id, *(n.id for n in snapshot.of_kind(NodeKind.LEAF) if _bad(n.grad_step))))
