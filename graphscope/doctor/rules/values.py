"""Where a NaN or Inf gradient first appeared."""

from __future__ import annotations

from typing import Iterator

from graphscope.doctor.evidence import Evidence, backward_location, backward_order, forward_op, rule, steps_text
from graphscope.model import Finding, GradStat, Node, NodeKind, Snapshot, base_name
from graphscope.numbers import scale_text


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
    if not any(map(_bad, snapshot.digest().gradients)):
        return None
    for node in backward_order(snapshot):
        # Backward runs against the forward edges: a node receives along its edges out, sends along its edges in.
        sent, received = snapshot.edges_in(node.id), snapshot.edges_out(node.id)
        if any(_bad(e.grad) for e in sent) and not any(_bad(e.grad) for e in received):
            return node
    return None


PERSISTENT_SKIPS = 3


@rule("nonfinite-grad")
def nonfinite_grad(evidence: Evidence) -> Iterator[Finding]:
    """Where the first NaN/Inf gradient appeared, in the first step that has one that loss
    scaling does not account for; a GradScaler's overflow while it looks for its scale is
    information."""
    expected = _scaler_overflows(evidence)
    for snapshot in evidence.snapshots:
        if snapshot.step in expected:
            continue
        origin = nonfinite_origin(snapshot)
        if origin is not None:
            yield _nonfinite_finding(evidence, snapshot, origin)
            break
    if expected:
        yield _scaler_finding(evidence, sorted(expected))


def _scaler_overflows(evidence: Evidence) -> set[int]:
    """The scaled steps whose non-finite gradients the scaler found and skipped while it was
    still settling its scale: before its first step with finite gradients, or in runs of fewer
    than PERSISTENT_SKIPS skips after it, at a scale of at least 1 (below 1 the gradients are
    not finite even unscaled)."""
    expected, settled, run = set(), False, []
    for update in evidence.scaler:
        if not update.skipped:
            settled, run = True, []
            continue
        run.append(update.step)
        if update.scale >= 1 and (not settled or len(run) < PERSISTENT_SKIPS):
            expected.add(update.step)
        else:
            expected.difference_update(run)
    return expected


def _scaler_finding(evidence: Evidence, steps: list[int]) -> Finding:
    """Information: the GradScaler skipped these steps on its way to a scale that fits."""
    updates = [u for u in evidence.scaler if u.step in set(steps)]
    scales = [u.scale for u in updates]
    lowest = min(u.after if u.after is not None else u.scale for u in updates)
    first = next((s for s in evidence.snapshots if s.step == steps[0]), None)
    message = (f"GradScaler skipped {steps_text(steps)} while its scale fell from {scale_text(scales[0])} "
               f"to {scale_text(lowest)}: the scaled loss's gradients held Inf/NaN, which is how a scaler "
               "finds the largest scale whose gradients stay finite; it skips the optimizer step each time.")
    fix = ("nothing, while it settles; if it keeps skipping, lower `init_scale` "
           f"(the last skipped step's scale was {scale_text(scales[-1])}).")
    location = backward_location(evidence, first) if first is not None else None
    return Finding("nonfinite-grad", "info", message, fix, location, steps[0])


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
