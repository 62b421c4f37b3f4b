"""The wrong-update loop recorded step by step under `graphscope.record()`, at two lengths."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

import graphscope

from benchmarks import report
from benchmarks.graphs import wrong_update
from benchmarks.measure import Outcome, ratio

MEMORY_LIMIT = 8 << 30  # stop a recording whose process grows past this (the machine is shared)
PLAIN_REPEATS = 3
WINDOW = 100  # steps averaged for the cost per step at the start and at the end


class Watch:
    """The loop's `stop()`: notes when each step starts; true past `seconds` or MEMORY_LIMIT."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.perf_counter()
        self.deadline = self.start + seconds
        self.starts: list[float] = []
        self.reason: str | None = None

    def __call__(self) -> bool:
        now = time.perf_counter()
        self.starts.append(now)
        if now > self.deadline:
            self.reason = f"> {self.seconds:g} s"
        elif len(self.starts) % WINDOW == 0 and resident_bytes() > MEMORY_LIMIT:
            self.reason = f"> {MEMORY_LIMIT >> 30} GiB"
        return self.reason is not None

    def per_step(self, last: bool) -> float:
        """Mean seconds between step starts over the first (or last) WINDOW steps."""
        marks = self.starts[-WINDOW - 1:] if last else self.starts[:WINDOW + 1]
        return (marks[-1] - marks[0]) / max(1, len(marks) - 1)


def resident_bytes() -> int:
    """This process's resident memory (Linux), or 0 where /proc is missing."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


@dataclass(frozen=True)
class RecordRow:
    """One loop length: plain and recorded totals, cost per step, and what was captured."""

    steps: int
    plain: float
    recorded: float
    done: int
    stopped: str | None
    first_step: float
    last_step: float
    last_nodes: int

    @property
    def recorded_outcome(self) -> Outcome:
        """The recorded total, or the limit it ran into."""
        return self.recorded if self.stopped is None else self.stopped


def plain_seconds(steps: int) -> float:
    """Median wall time of the loop without graphscope."""
    samples = []
    for _ in range(PLAIN_REPEATS):
        start = time.perf_counter()
        wrong_update(steps)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def measure(steps: int, limit: float) -> RecordRow:
    """The loop plain, then once under `graphscope.record()` (every step captured)."""
    plain = plain_seconds(steps)
    watch = Watch(limit)
    with graphscope.record() as session:
        _, done = wrong_update(steps, watch)
    recorded = time.perf_counter() - watch.start
    last_nodes = len(session.snapshots[-1].nodes) if session.snapshots else 0
    return RecordRow(steps, plain, recorded, done, watch.reason, watch.per_step(last=False),
                     watch.per_step(last=True), last_nodes)


def growth(short: RecordRow, long: RecordRow) -> str:
    """Recorded long ÷ recorded short, in words; a lower bound when only the long run was stopped."""
    if long.stopped is not None and short.stopped is None:
        return (f"**> {report.times(long.recorded / short.recorded)}**: the {long.steps:,}-step run was "
                f"stopped after {long.done:,} steps, which took {report.times(long.recorded / short.recorded)} "
                f"the time of the whole {short.steps:,}-step run")
    return f"**{report.times(ratio(long.recorded_outcome, short.recorded_outcome))}**"


def markdown(rows: list[RecordRow], limit: float) -> str:
    """The recording table and the growth ratio between the two lengths."""
    body = [
        [
            f"{row.steps:,}", report.seconds(row.plain), report.seconds(row.recorded_outcome),
            ("" if row.stopped is None else "> ") + report.times(row.recorded / row.plain),
            f"{row.done:,}" + ("" if row.stopped is None else f" (stopped: {row.stopped})"),
            report.seconds(row.first_step), report.seconds(row.last_step), report.count(row.last_nodes),
        ]
        for row in rows
    ]
    short, long = rows[0], rows[-1]
    return "\n\n".join([
        "## Recording the wrong-update loop",
        "`w = w - lr * grad` without `no_grad`, gradients from `torch.autograd.grad(loss, (w, b))`, "
        "every step captured by `with graphscope.record():` (default options). The graph of "
        "step k holds the whole update history (2k + 7 autograd nodes). The plain loop is the "
        f"median of {PLAIN_REPEATS} runs measured just before the recorded one; the recorded "
        f"loop runs once and is stopped at {limit:g} s (or {MEMORY_LIMIT >> 30} GiB of memory). "
        f"Per step: mean wall time of a recorded step over the first and the last {WINDOW} steps "
        "captured (constant if capturing a step does not grow with the history).",
        report.table(
            ("steps", "plain loop", "recorded loop", "recorded ÷ plain", "steps captured",
             f"per step, first {WINDOW}", f"per step, last {WINDOW}", "nodes in the last capture"),
            body,
        ),
        f"Recorded {long.steps:,} steps ÷ {short.steps:,} steps: {growth(short, long)} "
        f"(linear would be x{long.steps / short.steps:g}; the plain loops: "
        f"{report.times(ratio(long.plain, short.plain))}).",
    ])
