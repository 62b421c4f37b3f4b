"""A run: its steps, what the script did (how it ended, what it warned, what its optimizers
stepped) and what the doctor found."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from graphscope.model.snapshot import Snapshot

SEVERITIES = ("info", "warning", "error")


@dataclass(frozen=True)
class Finding:
    """One diagnosed autograd mistake: which rule, how bad, what happened, the fix, and where.

    `severity` is "error", "warning" or "info"; `location` is the user's `file.py:LINE`;
    `nodes` are ids in the snapshot of `step`; `explains_failure` marks the finding that
    says why the script failed.
    """

    rule: str
    severity: str
    message: str
    fix: str
    location: str | None = None
    step: int | None = None
    nodes: tuple[str, ...] = ()
    explains_failure: bool = False

    def __str__(self) -> str:
        where = f" at {self.location}" if self.location else ""
        return f"{self.severity} {self.rule}{where}: {self.message} Fix: {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, the stable field names."""
        return {"rule": self.rule, "severity": self.severity, "message": self.message, "fix": self.fix,
                "location": self.location, "step": self.step, "nodes": list(self.nodes),
                "explains_failure": self.explains_failure}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """Inverse of `to_dict`."""
        return cls(data["rule"], data["severity"], data["message"], data["fix"], data.get("location"),
                   data.get("step"), tuple(data.get("nodes", ())), bool(data.get("explains_failure", False)))


@dataclass(frozen=True)
class Failure:
    """How a script failed: the exception's type and message, and the user line it came from."""

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

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


@dataclass(frozen=True)
class Warned:
    """A warning a script triggered, and the user line that triggered it."""

    category: str
    message: str
    location: str | None = None


@dataclass(frozen=True)
class IdleParameter:
    """A parameter an optimizer was about to update while its `.grad` was None: first at
    captured step `step`, `times` times in all, out of the `total` steps of its optimizer; the
    last `trailing` of them in a row (None when not counted), from step `since` on."""

    name: str
    requires_grad: bool
    step: int | None
    location: str | None
    times: int = 1
    everything: bool = False
    total: int | None = None
    trailing: int | None = None
    since: int | None = None


@dataclass(frozen=True)
class OptimizerRecord:
    """An optimizer of the run: its variable name, the names of the parameters it updates, and
    after which captured step each of its step() calls ran."""

    name: str
    parameters: tuple[str, ...]
    steps: tuple[int, ...]


@dataclass(frozen=True)
class ScalerStep:
    """One update of a GradScaler: the last captured step before it, the scale that step's loss
    was multiplied by, whether the scaler skipped the optimizer step (non-finite gradients),
    and the scale it set for the steps after."""

    step: int
    scale: float
    skipped: bool
    after: float | None = None


@dataclass(frozen=True)
class GraphBreak:
    """A place where `torch.compile` split the user's code into several graphs, and why."""

    location: str
    reason: str


@dataclass
class Run:
    """The steps of one recorded run, live or reloaded, with what the script did and what the
    doctor found in it.

    `status` is the script's exit status and `failure` its exception, if it raised one;
    `warnings` what it warned, `optimizer_steps` after which captured step each
    optimizer.step() ran (and each update a step made between two calls of its closure),
    `idle_parameters` what an optimizer stepped without a gradient,
    `optimizers` each optimizer and what it updates, `scaler` each GradScaler update;
    `sites` where each outermost module call was made (`file:line`, by the call numbers in
    the nodes' `calls`); `root` is the folder the steps' `file:line` sources are relative to;
    `graph_breaks` where `torch.compile` had to split the script's code, as dynamo reported
    it; `ddp_parameters` the names of the parameters of the DistributedDataParallel module the
    script failed in, by DDP's index (DDP's errors name parameters by index).
    """

    snapshots: Sequence[Snapshot] = ()
    script: str | None = None
    status: int | None = None
    findings: list[Finding] = field(default_factory=list)
    failure: Failure | None = None
    warnings: tuple[Warned, ...] = ()
    optimizer_steps: tuple[int, ...] = ()
    idle_parameters: tuple[IdleParameter, ...] = ()
    root: str | None = None
    optimizers: tuple[OptimizerRecord, ...] = ()
    scaler: tuple[ScalerStep, ...] = ()
    sites: Mapping[int, str] = field(default_factory=dict)
    graph_breaks: tuple[GraphBreak, ...] = ()
    ddp_parameters: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.snapshots)

    def __getitem__(self, step: int) -> Snapshot:
        return self.snapshots[step]

    def __iter__(self) -> Iterator[Snapshot]:
        return iter(self.snapshots)

    def __str__(self) -> str:
        findings = f", {len(self.findings)} finding(s)" if self.findings else ""
        status = "" if self.status is None else f", exit status {self.status}"
        return f"run of {self.script or 'an unnamed script'}: {len(self)} step(s){status}{findings}"
