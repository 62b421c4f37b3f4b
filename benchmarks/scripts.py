"""`graphscope render SCRIPT` against `python SCRIPT`: whole processes, side by side."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks import report
from benchmarks.measure import OverLimit, Timings, interleaved, ratio

ROOT = Path(__file__).resolve().parent.parent
LOOPS = Path(__file__).resolve().parent / "loops"
CAPTURED = re.compile(r"captured (\d+) step")
# `python SCRIPT` as graphscope runs it: torch imported, then everything alive frozen out of
# the collector's sight, then the script as __main__ with its own argv and folder on sys.path.
FROZEN = ("import gc, os, runpy, sys, torch; gc.freeze(); sys.argv = sys.argv[1:]; "
          "sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0])); runpy.run_path(sys.argv[0], run_name='__main__')")


@dataclass(frozen=True)
class Script:
    """A script to run, its arguments, and how many turns it gets."""

    label: str
    path: Path
    args: tuple[str, ...] = ()
    repeats: int = 1


def suite(quick: bool) -> list[Script]:
    """Two training loops (3 turns each), then every example (1 turn; quick: the first 3). The
    MLP loop is a bar of issue #18, measured in the bars section (bars.py)."""
    transformer_steps, wrong_steps = ("20", "100") if quick else ("200", "1000")
    repeats = 1 if quick else 3
    examples = sorted((ROOT / "examples").glob("*.py"))[: 3 if quick else None]
    return [
        Script(f"transformer training loop, {transformer_steps} steps", LOOPS / "transformer_train.py",
               (transformer_steps,), repeats),
        Script(f"wrong-update loop (graph grows every step), {int(wrong_steps):,} steps",
               LOOPS / "wrong_update_train.py", (wrong_steps,), repeats),
        *[Script(f"examples/{path.name}", path) for path in examples],
    ]


class Command:
    """A process to time; keeps the exit status and stderr of its last run."""

    def __init__(self, argv: list[str], limit: float):
        self.argv = argv
        self.limit = limit
        self.status: int | None = None
        self.stderr = ""

    def __call__(self, _: object) -> None:
        try:
            done = subprocess.run(self.argv, cwd=ROOT, capture_output=True, text=True, timeout=self.limit)
        except subprocess.TimeoutExpired:
            raise OverLimit(f"> {self.limit:g} s") from None
        self.status, self.stderr = done.returncode, done.stderr


@dataclass(frozen=True)
class ScriptRow:
    """One script: median wall times, exit statuses, and the steps graphscope captured."""

    script: Script
    timings: Timings
    statuses: tuple[int | None, int | None]
    steps: int | None


def measure(script: Script, limit: float) -> ScriptRow:
    """Run the script plainly and under `graphscope render` (default options), taking turns."""
    with tempfile.TemporaryDirectory() as out:
        plain = Command([sys.executable, str(script.path), *script.args], limit)
        frozen = Command([sys.executable, "-c", FROZEN, str(script.path), *script.args], limit)
        render = Command([sys.executable, "-m", "graphscope", "render", str(script.path), "-o", out,
                          *script.args], limit)
        timings = interleaved({"plain": plain, "frozen": frozen, "render": render}, lambda: None, script.repeats)
    found = CAPTURED.search(render.stderr)
    return ScriptRow(script, timings, (plain.status, render.status), int(found.group(1)) if found else None)


def markdown(rows: list[ScriptRow], limit: float) -> str:
    """The script table: wall times of whole processes and their ratio."""
    body = [
        [row.script.label, report.count(row.steps), report.seconds(row.timings["plain"]),
         report.seconds(row.timings["render"]), report.times(ratio(row.timings["render"], row.timings["plain"])),
         report.seconds(row.timings["frozen"]), report.times(ratio(row.timings["render"], row.timings["frozen"])),
         f"{row.statuses[0]} / {row.statuses[1]}", str(row.timings.rounds)]
        for row in rows
    ]
    return "\n\n".join([
        "## `graphscope render` on whole scripts",
        "Wall time of `python SCRIPT` against `python -m graphscope render SCRIPT -o TMP` with "
        "default options: every step captured with its file:line sources, the steps `--steps auto` "
        "picks drawn as SVG by the embedded Graphviz, and every other file `render` writes by "
        "default. Both run in fresh processes, taking turns, and both include starting Python and "
        f"importing torch. Medians over the rounds shown; each run is stopped at {limit:g} s. An "
        "exit status of 1 is intended where the example demonstrates a failing script. "
        "`graphscope` freezes what is alive when it starts (torch and graphscope, imported) out of "
        "the garbage collector's sight, so the collector's full passes during the script and at "
        "exit skip those objects; a plain run pays for them, which is why a short script can run "
        "faster under `graphscope render`. The `frozen` column runs the script the same way "
        "(torch imported, `gc.freeze()`, then the script), so `render ÷ frozen` is what capturing "
        "and drawing add on their own.",
        report.table(("script", "steps captured", "python SCRIPT", "graphscope render", "render ÷ plain",
                      "python SCRIPT, frozen", "render ÷ frozen", "exit (plain / render)", "rounds"), body),
    ])
