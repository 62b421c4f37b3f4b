"""What the doctor's rules look at: `Evidence` (a run and the user's files), the rule registry,
and the readings of snapshots and source that several rules share."""

from __future__ import annotations

import ast
import bisect
import heapq
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from graphscope.doctor import scriptsource as code
from graphscope.model import (Failure, Finding, GradStat, IdleParameter, Node, NodeKind, OptimizerRecord, Run,
                              ScalerStep, Snapshot, Warned, base_name)
from graphscope.numbers import number


@dataclass(frozen=True)
class Evidence:
    """What the rules look at: the run's steps (read once), the user's files by display path,
    and what the script did (`optimizer_steps`: after which captured step each
    optimizer.step() ran, or updated between two calls of its closure, in order;
    `ddp_parameters`: the names of DDP's parameters by its index)."""

    snapshots: tuple[Snapshot, ...]
    sources: Mapping[str, str] = field(default_factory=dict)
    failure: Failure | None = None
    status: int | None = None
    warnings: tuple[Warned, ...] = ()
    optimizer_steps: tuple[int, ...] = ()
    idle_parameters: tuple[IdleParameter, ...] = ()
    optimizers: tuple[OptimizerRecord, ...] = ()
    scaler: tuple[ScalerStep, ...] = ()
    sites: Mapping[int, str] = field(default_factory=dict)
    ddp_parameters: tuple[str, ...] = ()

    @classmethod
    def of(cls, run: Run, sources: Mapping[str, str] | None = None) -> Evidence:
        """The evidence of a run; the user's files are read from `run.root` (else the current
        folder) when `sources` is not given."""
        snapshots = tuple(run.snapshots)
        if sources is None:
            sources = read_sources(run.root or os.getcwd(), referenced_files(run, snapshots))
        return cls(snapshots, sources, run.failure, run.status, tuple(run.warnings), tuple(run.optimizer_steps),
                   tuple(run.idle_parameters), tuple(run.optimizers), tuple(run.scaler), dict(run.sites),
                   tuple(run.ddp_parameters))

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

def upstream(snapshot: Snapshot, node_id: str) -> set[str]:
    """Ids of every node the given node was computed from (forward edges, walked iteratively)."""
    seen, stack = set(), [node_id]
    while stack:
        for source in snapshot.inputs_of(stack.pop()):
            if source not in seen:
                seen.add(source)
                stack.append(source)
    return seen


def backward_order(snapshot: Snapshot) -> list[Node]:
    """Nodes in the order backward reaches them: each after every node that consumes it."""
    index = {node.id: i for i, node in enumerate(snapshot.nodes)}
    consumers = {node_id: len(snapshot.users_of(node_id)) for node_id in index}
    ready = [(index[n], n) for n, count in consumers.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, node_id = heapq.heappop(ready)
        order.append(snapshot[node_id])
        for producer in snapshot.inputs_of(node_id):
            consumers[producer] -= 1
            if consumers[producer] == 0:
                heapq.heappush(ready, (index[producer], producer))
    return order


def steps_text(steps: Sequence[int]) -> str:
    """`steps 0–3` for a run of steps, `steps 0, 2, 5` otherwise."""
    if len(steps) > 2 and list(steps) == list(range(steps[0], steps[-1] + 1)):
        return f"steps {steps[0]}–{steps[-1]}"
    return ("step " if len(steps) == 1 else "steps ") + ", ".join(str(s) for s in steps)


def as_code(name: str) -> str:
    """A parameter's dotted name as Python reads it: `model.3.bias` is `model[3].bias` (the
    items of an nn.Sequential or nn.ModuleList are indexed, not attributes)."""
    head, *parts = name.split(".")
    return head + "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in parts)


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


def rebound_parameter(evidence: Evidence) -> tuple[str, str] | None:
    """(name, location) when the script failed reading `x.grad` of a parameter (a leaf that
    required grad in the last step) that an earlier line rebound to a value computed from
    itself outside no_grad (`x = x - lr * x.grad`): x is no longer the leaf, so its .grad is None."""
    failure = evidence.failure
    if failure is None or "NoneType" not in failure.message:
        return None
    where = code.split_location(failure.location)
    statement = evidence.statement(failure.location)
    tree = evidence.tree(where[0]) if where else None
    if statement is None or tree is None or not evidence.snapshots:
        return None
    leaves = {base_name(n.name) for n in evidence.snapshots[-1].of_kind(NodeKind.LEAF) if n.requires_grad}
    for name in code.grad_reads(statement):
        line = code.rebinding_line(tree, name, where[1]) if name in leaves else None
        if line is not None:
            return name, f"{where[0]}:{line}"
    return None


def failure_sentence(evidence: Evidence) -> str:
    """` That is why the script failed at X: TypeError: ...`."""
    failure = evidence.failure
    return f" That is why the script failed at {failure.location}: {failure.first_line}." if failure else ""


def grad_text(stat: GradStat) -> str:
    """`-0.5801` for a one-element gradient (four decimals, as lessons print it with `:.4f`), else its norm `‖3.2‖`."""
    value = stat.values[0] if stat.values is not None and len(stat.values) == 1 else None
    if value is None:
        return f"‖{number(stat.norm)}‖"
    return f"{value:.4f}" if 1e-3 <= abs(value) < 1e4 else number(value)


def backward_location(evidence: Evidence, snapshot: Snapshot) -> str | None:
    """Where a step's backward() was called, read from the source: the first backward call
    at or after the line that made its output; the output's own line when that is all we know."""
    outputs = snapshot.of_kind(NodeKind.OUTPUT)
    source = outputs[0].source if outputs else None
    where = code.split_location(source)
    tree = evidence.tree(where[0]) if where else None
    later = [n for n in code.backward_lines(tree) if n >= where[1]] if tree else []
    return f"{where[0]}:{later[0]}" if later else source


def parameter_names(evidence: Evidence) -> set[str]:
    """Names of the leaves that require grad in any step: the script's parameters."""
    return {base_name(n.name) for s in evidence.snapshots for n in s.of_kind(NodeKind.LEAF)
            if n.name and n.requires_grad}


def referenced_files(run: Run, snapshots: Sequence[Snapshot]) -> set[str]:
    """The display paths of the user files a run points at: node sources, reported locations
    and the script itself."""
    locations = set().union(*(s.digest().sources for s in snapshots))
    locations |= {run.failure.location} if run.failure is not None else set()
    locations |= {w.location for w in run.warnings} | {i.location for i in run.idle_parameters}
    files = {where[0] for where in map(code.split_location, locations) if where}
    return files | ({run.script} if run.script and run.root else set())


def read_sources(root: str | os.PathLike[str], paths: Iterable[str]) -> dict[str, str]:
    """The text of each file named by a display path under `root`; unreadable ones are left out."""
    texts = {}
    for path in sorted(set(paths)):
        try:
            texts[path] = (Path(root) / path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
    return texts
