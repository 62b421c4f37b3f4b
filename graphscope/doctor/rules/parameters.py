"""Parameters that no gradient reaches."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator

from graphscope.doctor import scriptsource as code
from graphscope.doctor.evidence import Evidence, failure_sentence, names_text, rebound_parameter, rule
from graphscope.model import Finding, IdleParameter, NodeKind


@rule("no-grad-param")
def no_grad_param(evidence: Evidence) -> Iterator[Finding]:
    """Parameters an optimizer updates, or the code reads the `.grad` of, that got no gradient."""
    everything = {i.location: i for i in evidence.idle_parameters if i.everything}
    for idle in everything.values():
        yield _all_idle_finding(evidence, idle)
    groups: dict[tuple, list[IdleParameter]] = defaultdict(list)
    stopped: dict[tuple, list[IdleParameter]] = defaultdict(list)
    sometimes = []
    for idle in evidence.idle_parameters:
        if idle.everything:
            continue
        use = _use(idle)
        if use == "never":
            cut = _detaching_location(evidence, idle.name) if idle.requires_grad else None
            groups[(idle.location, idle.step, idle.times, idle.requires_grad, cut)].append(idle)
        elif use == "stopped":
            stopped[(idle.location, idle.since, idle.trailing)].append(idle)
        else:
            sometimes.append(idle)
    for (_, _, _, _, cut), idles in groups.items():
        yield _idle_finding(evidence, idles, cut)
    for idles in stopped.values():
        yield _stopped_finding(evidence, idles)
    if sometimes:
        yield _sometimes_finding(evidence, sometimes)
    yield from _none_grad_failure(evidence)


def _use(idle: IdleParameter) -> str:
    """`never` (no gradient at any step of its optimizer), `stopped` (none for the last quarter
    of the steps, at least 2 in a row, after having some), `sometimes` (gradients in some steps
    but not in others, as control flow that picks layers gives)."""
    if not idle.requires_grad or idle.total is None or idle.times >= idle.total:
        return "never"
    if idle.trailing and idle.trailing >= 2 and idle.trailing * 4 >= idle.total:
        return "stopped"
    return "sometimes"


def _stopped_finding(evidence: Evidence, idles: list[IdleParameter]) -> Finding:
    """Parameters that had gradients, then none in the last optimizer steps."""
    first = idles[0]
    names = names_text([i.name for i in idles])
    it = "it" if len(idles) == 1 else "them"
    since = "before any backward" if first.since is None else f"since step {first.since}"
    message = (f"{names} got no gradient in the last {first.trailing} of {first.total} optimizer steps ({since}, "
               f"stepping at {evidence.at(first.location)}), after getting one before: the forward pass stopped "
               f"using {it}, so optimizer.step() has not changed {it} since.")
    fix = f"if {it} should still learn, use {it} in the forward pass again; if not, drop {it} from the optimizer."
    return Finding("no-grad-param", "warning", message, fix, first.location, first.since)


def _sometimes_finding(evidence: Evidence, idles: list[IdleParameter]) -> Finding:
    """Parameters with a gradient in some steps only: information, not a mistake."""
    counts = ", ".join(f"`{i.name}` {i.total - i.times}/{i.total}" for i in idles[:4])
    more = f" and {len(idles) - 4} more" if len(idles) > 4 else ""
    # What is known is whether .grad was None when a step ran: a .grad zeroed, not set to None,
    # counts as one although no gradient came, so nothing is said of when the forward used them.
    message = (f"some parameters had a .grad at only some optimizer steps ({counts}{more}): at the others, no "
               "backward had reached them since their .grad was last set to None, as when control flow "
               "chooses layers; PyTorch's optimizers skip a parameter whose .grad is None, so those steps "
               "did not change them.")
    fix = "nothing, if the forward pass skips them by design."
    return Finding("no-grad-param", "info", message, fix, idles[0].location, idles[0].step)


def _first_when(step: int | None) -> str:
    """`first at step 3`, or `first before any backward` when no step was captured yet."""
    return "first before any backward" if step is None else f"first at step {step}"


def _all_idle_finding(evidence: Evidence, idle: IdleParameter) -> Finding:
    """No parameter of an optimizer had a gradient when it stepped."""
    message = (f"none of the optimizer's parameters had a gradient when optimizer.step() ran at "
               f"{evidence.at(idle.location)} ({_first_when(idle.step)}), so the step changed nothing: "
               "zero_grad() runs between backward() and step(), or no backward() reached them.")
    fix = "call optimizer.zero_grad() before the forward pass (or before backward()), and step() right after backward()."
    return Finding("no-grad-param", "warning", message, fix, idle.location, idle.step)


def _idle_finding(evidence: Evidence, idles: list[IdleParameter], cut: str | None) -> Finding:
    """Parameters the optimizer updates without a gradient, alike: frozen, detached or unused."""
    first = idles[0]
    names = names_text([i.name for i in idles])
    it = "it" if len(idles) == 1 else "them"
    when = f"{first.times} optimizer step(s), {_first_when(first.step)}"
    if not first.requires_grad:
        message = (f"{names} {'has' if len(idles) == 1 else 'have'} requires_grad=False, so no gradient comes, "
                   f"yet the optimizer stepping at {evidence.at(first.location)} is asked to update {it} ({when}).")
        fix = (f"if {'it is' if len(idles) == 1 else 'they are'} frozen on purpose, leave {it} out of the "
               "optimizer (`[p for p in model.parameters() if p.requires_grad]`); otherwise call "
               "`.requires_grad_(True)`.")
        return Finding("no-grad-param", "info", message, fix, first.location, first.step)
    if cut:
        cause = f"{evidence.at(cut)} takes {it} out of the graph with .detach() / .data"
    else:
        cause = (f"{'it is' if len(idles) == 1 else 'they are'} not in the loss's graph: the forward pass does "
                 f"not use {it}, or only through .detach(), .data or under torch.no_grad()")
    message = f"{names} got no gradient in {when}, so optimizer.step() never changes {it}; {cause}."
    fix = (f"use {names} in the forward pass itself (not `.detach()` / `.data` of {it}), or, if not "
           f"needed, remove {it} from the model and the optimizer.")
    return Finding("no-grad-param", "warning", message, fix, cut or first.location, first.step)


def _detaching_location(evidence: Evidence, name: str) -> str | None:
    """The first user line that detaches parameter `name`, if the source shows one."""
    for path in sorted(evidence.sources):
        lines = code.detaching_lines(evidence.sources[path].splitlines(), name)
        if lines:
            return f"{path}:{lines[0]}"
    return None


def _missing_grads(evidence: Evidence) -> list[str]:
    """Tensors whose None `.grad` the failing line read, other than non-leaves (their own rules)."""
    failure = evidence.failure
    statement = evidence.statement(failure.location) if failure and "NoneType" in failure.message else None
    non_leaves = {n.name for s in evidence.snapshots for n in s.of_kind(NodeKind.TENSOR)}
    rebound = rebound_parameter(evidence)
    non_leaves |= {rebound[0]} if rebound else set()  # non-leaf-parameter explains it
    return [r for r in code.grad_reads(statement) if r not in non_leaves] if statement else []


def _none_grad_failure(evidence: Evidence) -> Iterator[Finding]:
    """The script failed on `x.grad` being None for a tensor the last backward did not reach."""
    missing = _missing_grads(evidence)
    if not missing:
        return
    name, location = missing[0], evidence.failure.location
    last = evidence.snapshots[-1].step if evidence.snapshots else None
    after = f"the backward before it (step {last})" if last is not None else "any backward"
    message = (f"{evidence.at(location)} reads `{name}.grad`, which is None: `{name}` got no gradient from "
               f"{after}, because it is not in that graph (unused, detached, or requires_grad=False)."
               + failure_sentence(evidence))
    fix = (f"make sure `{name}` requires grad and is used (not detached) in the loss, and call backward() "
           f"before reading `{name}.grad`; skip it with `if {name}.grad is not None:` if it is unused on purpose.")
    yield Finding("no-grad-param", "error", message, fix, location, last, (), True)
