"""The doctor: a catalogue of autograd mistakes, each a small rule over what a run captured.

A rule is a function from `Evidence` (the captured steps, the user's source files, and what
the run reported: its failure, its warnings, its optimizer steps) to `Finding`s, registered
under a stable id with `@rule("id")`. Adding one is one function here and its tests.

    run = graphscope.doctor("train.py")          # run the script, diagnose it
    for finding in run.findings: print(finding)  # rule, severity, message, fix, file:line
    graphscope.diagnose(session)                 # the same for a `with graphscope.record()` block

Torch-free, so saved runs can be examined anywhere.
"""

from __future__ import annotations

import ast
import bisect
import heapq
import json
import os
import re
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

from graphscope import scriptsource as code
from graphscope.model import SEVERITIES, Edge, Finding, GradStat, Node, NodeKind, Snapshot
from graphscope.renderers import labels

if TYPE_CHECKING:
    from graphscope.store import Run

FAIL_LEVELS = ("error", "warning", "info", "never")
SCRIPT_FAILED = "script-failed"


@dataclass(frozen=True)
class Failure:
    """How the script failed: the exception's type and message, and the user line it came from."""

    type: str
    message: str
    location: str | None = None

    @property
    def first_line(self) -> str:
        """`RuntimeError: Trying to backward through the graph a second time`: the first sentence."""
        lines = self.message.strip().splitlines()
        sentence = re.split(r"(?<=\.)\s", lines[0], maxsplit=1)[0] if lines else ""
        sentence = re.sub(r" \([^()]*\)$", "", sentence.rstrip("."))
        if len(sentence) > 100:
            sentence = sentence.split(": ")[0][:100]
        return self.type + (f": {sentence}" if sentence else "")


@dataclass(frozen=True)
class Warned:
    """A warning the script triggered, and the user line that triggered it."""

    category: str
    message: str
    location: str | None = None


@dataclass(frozen=True)
class IdleParameter:
    """A parameter an optimizer was about to update while its `.grad` was None."""

    name: str
    requires_grad: bool
    step: int | None
    location: str | None
    times: int = 1
    everything: bool = False


@dataclass(frozen=True)
class Evidence:
    """What the rules look at: the steps, the user's files by display path, and the run's reports
    (`optimizer_steps`: after which captured step each optimizer.step() ran, in order)."""

    snapshots: tuple[Snapshot, ...]
    sources: Mapping[str, str] = field(default_factory=dict)
    failure: Failure | None = None
    status: int | None = None
    warnings: tuple[Warned, ...] = ()
    optimizer_steps: tuple[int, ...] = ()
    idle_parameters: tuple[IdleParameter, ...] = ()

    def updated_between(self, earlier: int, later: int) -> bool:
        """True when an optimizer stepped after step `earlier` and before step `later`; without any
        optimizer, parameters are updated by hand and this cannot tell, so True."""
        steps = self.optimizer_steps
        if not steps:
            return True
        first = bisect.bisect_left(steps, earlier)
        return first < len(steps) and steps[first] < later

    def tree(self, path: str) -> ast.Module | None:
        """The parsed user file, None when unknown or unparsable."""
        text = self.sources.get(path)
        return None if text is None else code.parse(text)

    def trees(self) -> Iterator[tuple[str, ast.Module]]:
        """Every user file that parses, by display path, sorted."""
        for path in sorted(self.sources):
            tree = self.tree(path)
            if tree is not None:
                yield path, tree

    def statement(self, location: str | None) -> ast.stmt | None:
        """The statement at a `file.py:LINE` location."""
        where = code.split_location(location)
        tree = self.tree(where[0]) if where else None
        return None if tree is None else code.statement_at(tree, where[1])

    def line(self, location: str | None) -> str:
        """The stripped source line at a location, empty when unknown."""
        where = code.split_location(location)
        lines = self.sources.get(where[0], "").splitlines() if where else []
        return lines[where[1] - 1].strip() if where and 0 < where[1] <= len(lines) else ""

    def at(self, location: str | None) -> str:
        """`train.py:12 (`w = w - lr * w.grad`)`, for messages."""
        if not location:
            return "an unknown line"
        line = re.sub(r"\s+#.*$", "", self.line(location))
        if len(line) > 60:
            line = line[:59] + "…"
        return f"{location} (`{line}`)" if line else location


Rule = Callable[[Evidence], Iterable[Finding]]
RULES: dict[str, Rule] = {}


def rule(rule_id: str) -> Callable[[Rule], Rule]:
    """Register a rule under its stable id; the ids are the keys of RULES, in catalogue order."""

    def register(check: Rule) -> Rule:
        RULES[rule_id] = check
        return check

    return register


# --- reading snapshots ---------------------------------------------------------------------

_FROM_STEP = re.compile(r" \(from step \d+\)$")


def base_name(name: str | None) -> str | None:
    """The variable name of a leaf, without the ` (from step N)` added once it was renamed."""
    return None if name is None else _FROM_STEP.sub("", name)


def upstream(snapshot: Snapshot, node_id: str) -> set[str]:
    """Ids of every node the given node was computed from (forward edges, walked iteratively)."""
    sources: dict[str, list[str]] = defaultdict(list)
    for edge in snapshot.edges:
        sources[edge.target].append(edge.source)
    seen, stack = set(), [node_id]
    while stack:
        for source in sources[stack.pop()]:
            if source not in seen:
                seen.add(source)
                stack.append(source)
    return seen


def backward_order(snapshot: Snapshot) -> list[Node]:
    """Nodes in the order backward reaches them: each after every node that consumes it."""
    index = {node.id: i for i, node in enumerate(snapshot.nodes)}
    consumers = dict.fromkeys(index, 0)
    producers: dict[str, list[str]] = defaultdict(list)
    for edge in snapshot.edges:
        consumers[edge.source] += 1
        producers[edge.target].append(edge.source)
    ready = [(index[n], n) for n, count in consumers.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, node_id = heapq.heappop(ready)
        order.append(snapshot[node_id])
        for producer in producers[node_id]:
            consumers[producer] -= 1
            if consumers[producer] == 0:
                heapq.heappush(ready, (index[producer], producer))
    return order


def steps_text(steps: Sequence[int]) -> str:
    """`steps 0–3` for a run of steps, `steps 0, 2, 5` otherwise."""
    if len(steps) > 2 and list(steps) == list(range(steps[0], steps[-1] + 1)):
        return f"steps {steps[0]}–{steps[-1]}"
    return ("step " if len(steps) == 1 else "steps ") + ", ".join(str(s) for s in steps)


def names_text(names: Sequence[str], limit: int = 3) -> str:
    """`w`, `w` and `b`, `a`, `b`, `c` and 4 more."""
    quoted = [f"`{n}`" for n in names[:limit]]
    if len(names) > limit:
        return ", ".join(quoted) + f" and {len(names) - limit} more"
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def forward_op(op: str | None) -> str:
    """`SqrtBackward0` -> `sqrt`, the forward op a backward function stands for."""
    return re.sub(r"Backward\d*$", "", op or "?").lower()


def failing_snapshot(evidence: Evidence, text: str) -> Snapshot | None:
    """The last step whose backward failed with an error containing `text`."""
    for snapshot in reversed(evidence.snapshots):
        if any(" call failed: " in note and text in note for note in snapshot.notes):
            return snapshot
    return None


def failure_matches(evidence: Evidence, text: str) -> bool:
    """True when the script failed with an error containing `text`."""
    return evidence.failure is not None and text in evidence.failure.message


def failed_on_none_grad(evidence: Evidence, names: Iterable[str]) -> bool:
    """True when the script failed on a None `.grad` read by its failing line, of one of `names`."""
    failure = evidence.failure
    if failure is None or "NoneType" not in failure.message:
        return False
    statement = evidence.statement(failure.location)
    return statement is not None and bool(set(code.grad_reads(statement)) & set(names))


def failure_sentence(evidence: Evidence) -> str:
    """` That is why the script failed at X: TypeError: ...`."""
    failure = evidence.failure
    return f" That is why the script failed at {failure.location}: {failure.first_line}." if failure else ""


# --- the rules -------------------------------------------------------------------------------


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


@rule("graph-growth")
def graph_growth(evidence: Evidence) -> Iterator[Finding]:
    """Graphs that keep earlier steps' history alive: carried into new graphs, or summed up."""
    yield from _carried_history(evidence)
    yield from _kept_losses(evidence)


def _history_span(snapshot: Snapshot, backward_steps: set[int]) -> list[int]:
    """The earlier backward steps whose nodes this step's graph still holds."""
    return sorted({n.first_step for n in snapshot.nodes
                   if n.carried_over(snapshot.step) and n.first_step in backward_steps})


def _carried_history(evidence: Evidence) -> Iterator[Finding]:
    """The step carrying the longest history, when it spans at least two earlier steps."""
    backward_steps = {s.step for s in evidence.snapshots if s.call == "backward"}
    worst, worst_span = None, []
    for snapshot in evidence.snapshots:
        span = _history_span(snapshot, backward_steps)
        if len(span) >= 2 and len(span) >= len(worst_span):
            worst, worst_span = snapshot, span
    if worst is not None:
        yield _growth_finding(evidence, worst, worst_span)


def _history_holders(snapshot: Snapshot) -> list[Node]:
    """Carried-over nodes that feed this step's new nodes: where old history enters the graph."""
    step = snapshot.step
    feeding = {e.source for e in snapshot.edges
               if snapshot[e.source].carried_over(step) and not snapshot[e.target].carried_over(step)}
    return [n for n in snapshot.nodes if n.id in feeding]


def _holder_names(evidence: Evidence, holders: Sequence[Node]) -> list[str]:
    """The variables the holders were assigned to (`h` for `h = cell(x, h)`), by their lines."""
    names: list[str] = []
    for location in dict.fromkeys(n.source for n in holders if n.source):
        statement = evidence.statement(location)
        names += code.assigned_names(statement) if statement is not None else []
    return list(dict.fromkeys(names))


def _growth_finding(evidence: Evidence, snapshot: Snapshot, span: list[int]) -> Finding:
    """The finding for a step whose graph holds the history of `span`."""
    holders = _history_holders(snapshot)
    names = _holder_names(evidence, holders)
    locations = list(dict.fromkeys(n.source for n in holders if n.source))
    carried = sum(n.carried_over(snapshot.step) for n in snapshot.nodes)
    who = names_text(names) if names else "a tensor"
    made = f", made at {evidence.at(locations[0])}," if locations else ""
    hands = "hand" if len(names) > 1 else "hands"
    message = (f"step {snapshot.step}'s graph still holds the graphs of {len(span)} earlier steps "
               f"({steps_text(span)}; {carried} of {len(snapshot.nodes)} nodes): {who}{made} {hands} each "
               f"step's history to the next, so every backward runs through all earlier steps again "
               f"and memory grows with every step.")
    return Finding("graph-growth", "error", message, _growth_fix(evidence, names, locations),
                   locations[0] if locations else None, snapshot.step, tuple(n.id for n in holders))


def _growth_fix(evidence: Evidence, names: list[str], locations: list[str]) -> str:
    """No grad for a parameter update (its line reads a `.grad`), else detach the carried state."""
    if any(code.grad_reads(s) for s in map(evidence.statement, locations) if s is not None):
        return ("update parameters without recording the update: in place under `with torch.no_grad():`, "
                "so the next step's graph starts from the leaf again.")
    state = names[0] if names else "state"
    return (f"detach what one step hands to the next, e.g. `{state} = {state}.detach()` at the start "
            "of each step (truncated backpropagation); keep the history only if you mean to "
            "backpropagate through every earlier step.")


def _kept_losses(evidence: Evidence) -> Iterator[Finding]:
    """`total += loss` / `losses.append(loss)` on the tensor a loop calls backward() on."""
    for path, tree in evidence.trees():
        for kept in code.accumulations(tree):
            steps = [s.step for s in evidence.snapshots
                     if any(n.name == kept.tensor for n in s.of_kind(NodeKind.OUTPUT))]
            if len(steps) >= 2:
                yield _kept_loss_finding(evidence, f"{path}:{kept.line}", kept, steps)


def _kept_loss_finding(evidence: Evidence, location: str, kept: code.Accumulation,
                       steps: list[int]) -> Finding:
    """The finding for one accumulation of a loss tensor across steps."""
    verb = "collects" if kept.appends else "adds up"
    message = (f"{evidence.at(location)} {verb} the `{kept.tensor}` tensor of every step, and each one "
               f"holds its step's whole graph: `{kept.holder}` keeps the graphs of all {len(steps)} "
               f"captured steps ({steps_text(steps)}) alive, so memory grows with every step.")
    number = f"{kept.tensor}.item()"
    fix = (f"keep a number, not the tensor: `{kept.holder}.append({number})`" if kept.appends
           else f"keep a number, not the tensor: `{kept.holder} += {number}`")
    fix += f" (or `{kept.tensor}.detach()` to keep a tensor without its graph)."
    return Finding("graph-growth", "warning", message, fix, location, steps[-1])


def _fresh_backward_steps(evidence: Evidence) -> list[Snapshot]:
    """Backward steps through a new graph (a second backward through the same graph adds on purpose)."""
    return [s for s in evidence.snapshots if s.call == "backward"
            and not any(o.carried_over(s.step) for o in s.of_kind(NodeKind.OUTPUT))]


def _leaf_histories(evidence: Evidence) -> dict[str, list[tuple[Snapshot, Node]]]:
    """Leaf name -> (step, leaf) for every fresh backward step that reached it while a variable
    still held it (a leaf no variable holds, `w (from step 0)`, has a .grad nobody reads)."""
    histories: dict[str, list[tuple[Snapshot, Node]]] = defaultdict(list)
    for snapshot in _fresh_backward_steps(evidence):
        for leaf in snapshot.of_kind(NodeKind.LEAF):
            if leaf.grad is not None and leaf.grad_step is not None and leaf.name == base_name(leaf.name):
                histories[leaf.name or leaf.id].append((snapshot, leaf))
    return histories


def _never_zeroed(evidence: Evidence, history: list[tuple[Snapshot, Node]]) -> bool:
    """True when every step after the first added to `.grad`, no step ever started afresh, and the
    parameters were updated in between (summing several backwards before one update is deliberate)."""
    pairs = list(zip(history, history[1:]))
    return bool(pairs) and all(labels.accumulated(leaf) and evidence.updated_between(before.step, now.step)
                               for (before, _), (now, leaf) in pairs)


@rule("grad-accumulation")
def grad_accumulation(evidence: Evidence) -> Iterator[Finding]:
    """Leaves whose `.grad` sums every step's gradient because nothing zeroed it in between."""
    groups: dict[tuple[int, ...], list[str]] = defaultdict(list)
    histories = _leaf_histories(evidence)
    for name, history in histories.items():
        if _never_zeroed(evidence, history):
            groups[tuple(s.step for s, _ in history)].append(name)
    for names in groups.values():
        yield _accumulation_finding(evidence, names, [histories[n] for n in names])


def grad_text(stat: GradStat) -> str:
    """`-0.5801` for a one-element gradient (four decimals, as the seeds print it), else its norm `‖3.2‖`."""
    value = stat.values[0] if stat.values is not None and len(stat.values) == 1 else None
    if value is None:
        return f"‖{labels.number(stat.norm)}‖"
    return f"{value:.4f}" if 1e-3 <= abs(value) < 1e4 else labels.number(value)


def _added_steps(evidence: Evidence, name: str, first: int, last: int) -> list[GradStat]:
    """What each backward step from `first` to `last` added to the leaf `name`, a backward
    through the same graph again included (it adds to `.grad` too)."""
    added = []
    for snapshot in evidence.snapshots:
        if snapshot.call == "backward" and first <= snapshot.step <= last:
            added.extend(leaf.grad_step for leaf in snapshot.of_kind(NodeKind.LEAF)
                         if (leaf.name or leaf.id) == name and leaf.grad_step is not None)
    return added


def _contributions(added: list[GradStat], limit: int = 5) -> str:
    """`-0.5801, -0.5269, -0.4251`: what each step added."""
    parts = [grad_text(stat) for stat in added]
    if len(parts) > limit:
        parts = parts[:limit - 2] + ["…", parts[-1]]
    return ", ".join(parts)


def _accumulation_finding(evidence: Evidence, names: list[str],
                          histories: list[list[tuple[Snapshot, Node]]]) -> Finding:
    """One finding for the leaves that accumulated over the same steps."""
    first = histories[0]
    last_snapshot, last_leaf = first[-1]
    added = _added_steps(evidence, names[0], first[0][0].step, last_snapshot.step)
    grads = names_text([f"{n}.grad" for n in names])
    message = (f"{grads} {'was' if len(names) == 1 else 'were'} never zeroed between steps, so each "
               f"backward() added to the old gradient: after step {last_snapshot.step}, "
               f"{names[0]}.grad is {grad_text(last_leaf.grad)}, the sum of {len(added)} steps' gradients "
               f"({_contributions(added)}), not step {last_snapshot.step}'s own "
               f"{grad_text(last_leaf.grad_step)}.")
    fix = ("zero the gradients once per step before backward(): `optimizer.zero_grad()`, or "
           f"`{names[0]}.grad = None` / `{names[0]}.grad.zero_()`; to accumulate on purpose, zero "
           "every N steps, right after optimizer.step().")
    nodes = tuple(h[-1][1].id for h in histories)
    return Finding("grad-accumulation", "warning", message, fix, backward_location(evidence, last_snapshot),
                   last_snapshot.step, nodes)


def backward_location(evidence: Evidence, snapshot: Snapshot) -> str | None:
    """Where a step's backward() was called, read from the source: the first backward call
    at or after the line that made its output; the output's own line when that is all we know."""
    outputs = snapshot.of_kind(NodeKind.OUTPUT)
    source = outputs[0].source if outputs else None
    where = code.split_location(source)
    tree = evidence.tree(where[0]) if where else None
    later = [n for n in code.backward_lines(tree) if n >= where[1]] if tree else []
    return f"{where[0]}:{later[0]}" if later else source


@rule("no-grad-param")
def no_grad_param(evidence: Evidence) -> Iterator[Finding]:
    """Parameters an optimizer updates, or the code reads the `.grad` of, that got no gradient."""
    everything = {i.location: i for i in evidence.idle_parameters if i.everything}
    for idle in everything.values():
        yield _all_idle_finding(evidence, idle)
    groups: dict[tuple, list[IdleParameter]] = defaultdict(list)
    for idle in evidence.idle_parameters:
        if not idle.everything:
            cut = _detaching_location(evidence, idle.name) if idle.requires_grad else None
            groups[(idle.location, idle.step, idle.times, idle.requires_grad, cut)].append(idle)
    for (_, _, _, _, cut), idles in groups.items():
        yield _idle_finding(evidence, idles, cut)
    yield from _none_grad_failure(evidence)


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
    received: dict[str, list[Edge]] = defaultdict(list)
    sent: dict[str, list[Edge]] = defaultdict(list)
    for edge in snapshot.edges:
        received[edge.source].append(edge)
        sent[edge.target].append(edge)
    for node in backward_order(snapshot):
        if any(_bad(e.grad) for e in sent[node.id]) and not any(_bad(e.grad) for e in received[node.id]):
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
    count = max(e.grad.nonfinite for e in snapshot.edges if e.target == origin.id and _bad(e.grad))
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


SECOND_TIME = "Trying to backward through the graph a second time"


@rule("backward-twice")
def backward_twice(evidence: Evidence) -> Iterator[Finding]:
    """A backward through a graph whose saved tensors an earlier backward already freed."""
    snapshot = failing_snapshot(evidence, SECOND_TIME)
    if snapshot is not None:
        yield _backward_twice_finding(evidence, snapshot)
    elif failure_matches(evidence, SECOND_TIME):
        message = ("the script read tensors saved for backward after a backward() had freed them: "
                   f"{evidence.at(evidence.failure.location)}." + failure_sentence(evidence))
        yield Finding("backward-twice", "error", message, _BACKWARD_TWICE_FIX, evidence.failure.location,
                      None, (), True)


_BACKWARD_TWICE_FIX = ("pass retain_graph=True to the earlier backward() if you really need to go through "
                       "the same graph again (it keeps the saved tensors in memory), or recompute the forward "
                       "pass before the second backward().")


def _freed_functions(snapshot: Snapshot) -> list[Node]:
    """Functions whose saved tensors were found freed; without that record, every carried-over one."""
    freed = [n for n in snapshot.of_kind(NodeKind.FUNCTION) if n.saved_freed]
    return freed or [n for n in snapshot.of_kind(NodeKind.FUNCTION) if n.carried_over(snapshot.step)]


def _identity(node: Node) -> tuple:
    """What names one autograd node across steps: its op, its source line, its first step."""
    return node.op, node.source, node.first_step


def _freeing_step(evidence: Evidence, snapshot: Snapshot, freed: list[Node]) -> Snapshot | None:
    """The last earlier step whose backward went through the freed functions."""
    wanted = {_identity(n) for n in freed}
    earlier = [s for s in evidence.snapshots if s.step < snapshot.step]
    return next((s for s in reversed(earlier) if wanted & {_identity(n) for n in s.nodes}), None)


def _saved_names(earlier: Snapshot, freed: list[Node]) -> list[str]:
    """`a (self)`, `b (other)`: the tensors the freed functions had saved, as that earlier step saw them."""
    wanted = {_identity(n) for n in freed}
    targets = {n.id for n in earlier.nodes if _identity(n) in wanted}
    saved = [earlier[e.source] for e in earlier.edges
             if e.target in targets and earlier[e.source].kind is NodeKind.SAVED]
    return sorted({f"{n.name} ({n.op})" if n.name else f"its {n.op}" for n in saved})


def _backward_twice_finding(evidence: Evidence, snapshot: Snapshot) -> Finding:
    """The finding for a failed second backward through a freed graph."""
    freed = _freed_functions(snapshot)
    earlier = _freeing_step(evidence, snapshot, freed)
    output = snapshot.of_kind(NodeKind.OUTPUT)[0]
    saved = _saved_names(earlier, freed) if earlier is not None else []
    functions = ", ".join(f"{n.op} (at {n.source or 'an unknown line'})" for n in freed[:3])
    lost = f": {', '.join(saved)}" if saved else ""
    freed_by = f"the backward of step {earlier.step}" if earlier is not None else "an earlier backward"
    message = (f"step {snapshot.step}'s backward goes through the graph of `{output.title}`, made at "
               f"{evidence.at(output.source)}, a second time, but {freed_by} already freed the tensors "
               f"that {functions} saved for it{lost}.")
    explains = failure_matches(evidence, SECOND_TIME)
    location = evidence.failure.location if explains else output.source
    if explains:
        message += failure_sentence(evidence)
    return Finding("backward-twice", "error", message, _BACKWARD_TWICE_FIX, location, snapshot.step,
                   tuple(n.id for n in freed), explains)


_LEAF_INPLACE = re.compile(r"a (view of a )?leaf Variable that requires grad is being used in an in-place operation")


@rule("inplace-leaf")
def inplace_leaf(evidence: Evidence) -> Iterator[Finding]:
    """The script changed a leaf that requires grad in place, outside torch.no_grad()."""
    failure = evidence.failure
    found = _LEAF_INPLACE.search(failure.message) if failure else None
    if found is None:
        return
    statement = evidence.statement(failure.location)
    changed = code.inplace_changes(statement) if statement is not None else []
    name = changed[0] if changed else "a leaf tensor"
    through = " through a view of it (an index or a slice)" if found.group(1) else ""
    message = (f"{evidence.at(failure.location)} changes `{name}` in place{through}, but `{name}` is a leaf "
               "that requires grad: autograd cannot record an in-place change to a tensor whose gradient it "
               "accumulates." + failure_sentence(evidence))
    fix = (f"wrap the update in `with torch.no_grad():` (how optimizers update parameters); if the change "
           f"belongs in the graph, compute a new tensor instead (`{name}2 = {name} * 2`, or `{name}.clone()` first).")
    step = evidence.snapshots[-1].step if evidence.snapshots else None
    yield Finding("inplace-leaf", "error", message, fix, failure.location, step, (), True)


_MODIFIED = re.compile(r"modified by an inplace operation: \[(?P<tensor>.+?)\],? (?:which is output \d+ "
                       r"of (?P<op>\w+), )?is at version (?P<now>\d+); expected version (?P<then>\d+)")


def _modified_error(evidence: Evidence) -> tuple[re.Match[str], Snapshot | None] | None:
    """The version-counter error and the step it broke, from the failure or a step's notes."""
    snapshot = failing_snapshot(evidence, "modified by an inplace operation")
    texts = [evidence.failure.message] if evidence.failure else []
    texts += list(snapshot.notes) if snapshot is not None else []
    for text in texts:
        found = _MODIFIED.search(text)
        if found:
            return found, snapshot or (evidence.snapshots[-1] if evidence.snapshots else None)
    return None


def _error_shape(error: re.Match[str]) -> tuple[int, ...] | None:
    """The shape of the tensor a version-counter error names: `torch.FloatTensor [8, 4]` -> (8, 4)."""
    found = re.search(r"\[([\d, ]*)\]$", error["tensor"])
    return None if found is None else tuple(int(d) for d in found.group(1).replace(" ", "").split(",") if d)


def _holds_shape(snapshot: Snapshot | None, name: str, shape: tuple[int, ...] | None) -> bool:
    """False only when the step shows the tensor named `name` with another shape than `shape`."""
    if snapshot is None or shape is None:
        return True
    node = next((n for n in snapshot.nodes if n.name == name and n.shape is not None), None)
    return node is None or tuple(node.shape) == shape


def _changer(evidence: Evidence, producer: Node, error: re.Match[str], snapshot: Snapshot | None) -> str | None:
    """The first line after the producer's that changes its result in place: in a variable the
    producer's line assigned, whose tensor has the shape PyTorch names (else it is not the one)."""
    where = code.split_location(producer.source)
    statement = evidence.statement(producer.source)
    names = set(code.assigned_names(statement)) if statement is not None else set()
    names = {name for name in names if _holds_shape(snapshot, name, _error_shape(error))}
    tree = evidence.tree(where[0]) if where else None
    failure = code.split_location(evidence.failure.location) if evidence.failure else None
    until = failure[1] if failure and where and failure[0] == where[0] and failure[1] > where[1] else None
    lines = code.inplace_lines(tree, names, where[1], until) if tree is not None and names else []
    return f"{where[0]}:{lines[0]}" if lines else None


def _producer(snapshot: Snapshot | None, op: str | None) -> Node | None:
    """The backward function of the forward op the error names (`Exp` -> ExpBackward0)."""
    if snapshot is None or not op:
        return None
    return next((n for n in snapshot.of_kind(NodeKind.FUNCTION) if (n.op or "").startswith(op + "Backward")), None)


def _modified_message(evidence: Evidence, error: re.Match[str], snapshot: Snapshot | None,
                      producer: Node | None, changer: str | None) -> str:
    """What backward needed, what changed it and how far the version counter moved."""
    step = f"step {snapshot.step}'s backward" if snapshot is not None else "backward"
    if producer is not None:
        what = f"the result of {error['op']} made at {evidence.at(producer.source)}"
        how = f"{evidence.at(changer)} changed it in place afterwards" if changer else \
            "an in-place op changed it afterwards"
    else:
        what = f"a [{error['tensor']}] tensor it saved in the forward pass"
        how = "it was changed in place afterwards, typically by optimizer.step() or an in-place parameter update"
    return (f"{step} needs {what}, but {how} (version {error['then']} → {error['now']}), so the value saved "
            "for backward is gone.")


@rule("inplace-modified")
def inplace_modified(evidence: Evidence) -> Iterator[Finding]:
    """Backward needed a saved tensor that an in-place op changed after the forward pass."""
    found = _modified_error(evidence)
    if found is None:
        return
    error, snapshot = found
    producer = _producer(snapshot, error["op"])
    changer = _changer(evidence, producer, error, snapshot) if producer is not None else None
    message = _modified_message(evidence, error, snapshot, producer, changer)
    explains = failure_matches(evidence, "modified by an inplace operation")
    if explains:
        message += failure_sentence(evidence)
    fix = ("use the out-of-place form (`y = y + 1` instead of `y += 1`, `y = y.relu()` instead of `y.relu_()`) "
           "or change a copy (`y = y.clone()`); for parameters, run backward() before optimizer.step() and a "
           "fresh forward pass after it.")
    location = changer or (producer.source if producer else None) or (evidence.failure.location if explains else None)
    yield Finding("inplace-modified", "error", message, fix, location,
                  snapshot.step if snapshot else None, (producer.id,) if producer else (), explains)


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
    if name in _parameter_names(evidence):
        fix = (f"`{name}` was a leaf in an earlier step: keep it one by updating it in place under "
               f"torch.no_grad() (`with torch.no_grad(): {name} -= lr * {name}.grad`), so backward() fills "
               f"{name}.grad; retain_grad() would keep the gradient of the copy and leave the graph growing.")
    else:
        fix = (f"call `{name}.retain_grad()` before backward() to keep this gradient, or read `.grad` of the "
               "leaf it was computed from (a parameter must stay a leaf: update it under torch.no_grad()).")
    return Finding("nonleaf-grad-access", "warning", message, fix, warned.location, None, (), explains)


AMBIGUOUS = "Boolean value of Tensor with more than one value is ambiguous"


def _parameter_names(evidence: Evidence) -> set[str]:
    """Names of the leaves that require grad in any step: the script's parameters."""
    return {base_name(n.name) for s in evidence.snapshots for n in s.of_kind(NodeKind.LEAF)
            if n.name and n.requires_grad}


@rule("tensor-truthiness")
def tensor_truthiness(evidence: Evidence) -> Iterator[Finding]:
    """`if w.grad:` and other truth tests of a gradient or parameter tensor, found in the source."""
    parameters = _parameter_names(evidence)
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


# --- the entry point -------------------------------------------------------------------------


def _unexplained_failure(evidence: Evidence, findings: Sequence[Finding]) -> list[Finding]:
    """A finding for a failure no rule explains, so the doctor never passes a failing script."""
    if any(f.explains_failure for f in findings):
        return []
    failure = evidence.failure
    if failure is not None and failure.type == "KeyboardInterrupt":
        message = f"the script was interrupted (Ctrl-C) at {evidence.at(failure.location)}, before it ended."
        fix = "graphscope kept every step captured before it; run the script to its end to check the rest."
    elif failure is not None:
        message = (f"the script failed at {evidence.at(failure.location)}: {failure.first_line} "
                   "(no doctor rule explains this error).")
        fix = "fix the error the traceback shows; graphscope kept every step captured before it."
    elif evidence.status not in (None, 0):
        message = f"the script exited with status {evidence.status}."
        fix = "see why the script chose that status; graphscope kept every step captured before it."
    else:
        return []
    step = evidence.snapshots[-1].step if evidence.snapshots else None
    return [Finding(SCRIPT_FAILED, "error", message, fix, failure.location if failure else None, step, (), True)]


def _order(finding: Finding) -> tuple:
    """Errors first, then by file and line, then by rule: a stable reading order."""
    where = code.split_location(finding.location) or (finding.location or "~", 0)
    return -SEVERITIES.index(finding.severity), where, finding.rule, finding.step or 0, finding.message


def referenced_files(snapshots: Sequence[Snapshot], result: Any = None) -> set[str]:
    """The display paths of the user files a run points at: node sources and reported locations."""
    locations = {n.source for s in snapshots for n in s.nodes if n.source}
    if result is not None:
        failure = getattr(result, "failure", None)
        locations |= {failure.location} if failure is not None else set()
        locations |= {w.location for w in getattr(result, "warnings", ())}
        locations |= {i.location for i in getattr(result, "idle_parameters", ())}
    return {where[0] for where in map(code.split_location, locations) if where}


def read_sources(root: str | os.PathLike[str], paths: Iterable[str]) -> dict[str, str]:
    """The text of each file named by a display path under `root`; unreadable ones are left out."""
    texts = {}
    for path in sorted(set(paths)):
        try:
            texts[path] = (Path(root) / path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
    return texts


def gather(run: Any, sources: Mapping[str, str] | None = None, result: Any = None,
           root: str | os.PathLike[str] | None = None) -> Evidence:
    """The Evidence of a run: see `diagnose` for the arguments."""
    snapshots = tuple(getattr(run, "snapshots", run))
    if sources is None:
        folder = root or getattr(run, "root", None) or os.getcwd()
        sources = read_sources(folder, referenced_files(snapshots, result))
    return Evidence(snapshots, sources, getattr(result, "failure", None), getattr(result, "status", None),
                    tuple(getattr(result, "warnings", ())), tuple(getattr(result, "optimizer_steps", ())),
                    tuple(getattr(result, "idle_parameters", ())))


def diagnose(run: Any, sources: Mapping[str, str] | None = None, result: Any = None,
             root: str | os.PathLike[str] | None = None) -> list[Finding]:
    """Every finding for a run, errors first.

    `run` is a Session, a Run or a list of snapshots; `result` the ScriptResult of the
    script that made it (failure, warnings, optimizer steps), when there is one; `sources`
    maps display paths to file text, read from `root` (the session's root, else the current
    folder) when not given.
    """
    evidence = gather(run, sources, result, root)
    findings = [finding for check in RULES.values() for finding in check(evidence)]
    return sorted(findings + _unexplained_failure(evidence, findings), key=_order)


def doctor(script: str | os.PathLike[str], args: Sequence[str] = (), saved: bool = True,
           source: bool = True) -> Run:
    """Run a script like `graphscope doctor`: every step captured, and `run.findings`."""
    from graphscope.runner import record_script
    from graphscope.store import Run

    session, result = record_script(str(script), args, saved=saved, source=source)
    snapshots = list(session.snapshots)
    return Run(snapshots, Path(script).name, result.status, diagnose_script(snapshots, result, script))


def diagnose_script(snapshots: Sequence[Snapshot], result: Any, script: str | os.PathLike[str]) -> list[Finding]:
    """The findings for the steps of a script run by `record_script`, its files read from its folder."""
    path = Path(script)
    files = referenced_files(snapshots, result) | {path.name}
    return diagnose(snapshots, read_sources(path.resolve().parent, files), result)


# --- reporting -------------------------------------------------------------------------------


def fails(findings: Iterable[Finding], fail_on: str = "error") -> bool:
    """True when any finding is at least as severe as `fail_on` (`never` never fails)."""
    if fail_on == "never":
        return False
    threshold = SEVERITIES.index(fail_on)
    return any(SEVERITIES.index(f.severity) >= threshold for f in findings)


def _counts(findings: Sequence[Finding]) -> str:
    """`2 errors, 1 warning`."""
    parts = []
    for severity in reversed(SEVERITIES):
        count = sum(f.severity == severity for f in findings)
        if count:
            parts.append(f"{count} {severity}" + ("s" if count > 1 else ""))
    return ", ".join(parts)


def format_finding(finding: Finding, width: int = 100) -> str:
    """A few terminal lines: severity, rule, where; the message; the fix."""
    head = f"{finding.severity} {finding.rule}"
    if finding.location:
        head += f" at {finding.location}"
    if finding.step is not None:
        head += f" (step {finding.step})"
    body = textwrap.fill(finding.message, width, initial_indent="  ", subsequent_indent="  ")
    fix = textwrap.fill(finding.fix, width, initial_indent="  fix: ", subsequent_indent="       ")
    return "\n".join((head, body, fix))


def report(findings: Sequence[Finding], script: str | None = None) -> str:
    """The doctor's report: a headline, then each finding."""
    subject = f" in {script}" if script else ""
    if not findings:
        return f"graphscope doctor: no autograd mistakes found{subject}"
    head = f"graphscope doctor: {len(findings)} finding(s){subject}: {_counts(findings)}"
    return "\n\n".join([head, *(format_finding(f) for f in findings)])


def findings_json(findings: Sequence[Finding]) -> str:
    """The findings as a JSON list, deterministic."""
    return json.dumps([f.to_dict() for f in findings], indent=2, sort_keys=True, ensure_ascii=False) + "\n"
