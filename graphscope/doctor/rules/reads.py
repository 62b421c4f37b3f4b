"""Reading what autograd does not give: a non-leaf's `.grad`, a tensor's truth value."""

from __future__ import annotations

import ast
from typing import Iterator

from graphscope.doctor import scriptsource as code
from graphscope.doctor.evidence import (Evidence, failed_on_none_grad, failure_matches, failure_sentence,
                                        parameter_names, rule)
from graphscope.model import Failure, Finding, NodeKind, Warned


NONLEAF_GRAD = "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed"


@rule("nonleaf-grad-access")
def nonleaf_grad_access(evidence: Evidence) -> Iterator[Finding]:
    """The script read `.grad` of a non-leaf tensor (PyTorch warns; the value is None)."""
    non_leaves = {n.name for s in evidence.snapshots for n in s.of_kind(NodeKind.TENSOR) if n.name}
    for warned in evidence.warnings:
        if NONLEAF_GRAD in warned.message:
            yield _nonleaf_grad_finding(evidence, warned, non_leaves)


def _nonleaf_grad_finding(evidence: Evidence, warned: Warned, non_leaves: set[str]) -> Finding:
    """The finding for one line that read a non-leaf's `.grad`."""
    statement = evidence.statement(warned.location)
    reads = code.grad_reads(statement) if statement is not None else []
    name = next((r for r in reads if r in non_leaves), reads[0] if reads else "the tensor")
    message = (f"{evidence.at(warned.location)} reads `{name}.grad`, but `{name}` is not a leaf (it was "
               "computed from other tensors), so backward() does not store its gradient: it is None.")
    explains = failed_on_none_grad(evidence, [name]) and evidence.failure.location == warned.location
    if explains:
        message += failure_sentence(evidence)
    if name in parameter_names(evidence):
        fix = (f"`{name}` was a leaf in an earlier step: keep it one by updating it in place under "
               f"torch.no_grad() (`with torch.no_grad(): {name} -= lr * {name}.grad`), so backward() fills "
               f"{name}.grad; retain_grad() would keep the gradient of the copy and leave the graph growing.")
    else:
        fix = (f"call `{name}.retain_grad()` before backward() to keep this gradient, or read `.grad` of the "
               "leaf it was computed from (a parameter must stay a leaf: update it under torch.no_grad()).")
    return Finding("nonleaf-grad-access", "warning", message, fix, warned.location, None, (), explains)


AMBIGUOUS = "Boolean value of Tensor with more than one value is ambiguous"


@rule("tensor-truthiness")
def tensor_truthiness(evidence: Evidence) -> Iterator[Finding]:
    """`if w.grad:` and other truth tests of a gradient or parameter tensor, found in the source."""
    parameters = parameter_names(evidence)
    failure = evidence.failure if failure_matches(evidence, AMBIGUOUS) else None
    reported = set()
    for path, tree in evidence.trees():
        for test in code.truth_tests(tree):
            tested = code.text(test.expression)
            is_grad = isinstance(test.expression, ast.Attribute) and test.expression.attr == "grad"
            if is_grad or tested in parameters:
                location = f"{path}:{test.line}"
                reported.add(location)
                yield _truthiness_finding(evidence, location, tested, is_grad, failure)
    if failure is not None and failure.location not in reported:
        yield _truthiness_failure(evidence, failure)


def _truthiness_finding(evidence: Evidence, location: str, tested: str, is_grad: bool,
                        failure: Failure | None) -> Finding:
    """One truth test of a gradient or parameter; an error when it is the line that failed."""
    none = ", just like a missing one (None)" if is_grad else ""
    message = (f"{evidence.at(location)} tests the truth value of `{tested}`: a tensor with more than one "
               f"element raises RuntimeError there, and one that is exactly zero counts as False{none}, "
               "so the branch silently depends on the values.")
    failed = failure is not None and failure.location == location
    if failed:
        message += failure_sentence(evidence)
    fix = (f"say what you mean: `if {tested} is not None:` to ask whether it exists, "
           f"`if {tested}.any():` to ask whether any element is non-zero.")
    return Finding("tensor-truthiness", "error" if failed else "warning", message, fix, location, None, (), failed)


def _truthiness_failure(evidence: Evidence, failure: Failure) -> Finding:
    """The script failed testing a multi-element tensor for truth on a line the scan did not flag."""
    message = (f"{evidence.at(failure.location)} tests the truth value of a tensor with more than one element, "
               "and such a tensor has no single truth value." + failure_sentence(evidence))
    fix = "reduce it first: `.any()`, `.all()`, or compare a number (`x.sum().item() > 0`)."
    return Finding("tensor-truthiness", "error", message, fix, failure.location, None, (), True)
