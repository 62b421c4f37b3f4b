"""The bars of issue #18: `graphscope render SCRIPT` against `python SCRIPT`, whole processes,
taking turns, medians. Each bar is a ratio measured in this run, never an absolute time."""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks import report
from benchmarks.measure import Outcome, Timings, interleaved, ratio
from benchmarks.scripts import FROZEN, Command

CONSOLE = Path(sys.executable).with_name("graphscope")
# The command as users type it: the console script beside this Python, else the module.
GRAPHSCOPE = ["graphscope"] if CONSOLE.exists() else ["python", "-m", "graphscope"]
MB = 1_000_000


@dataclass(frozen=True)
class Bar:
    """One bar: a script of benchmarks/loops/, its size (argv[1]) in a full and a quick run,
    the options `render` gets, and what render ÷ plain (and the bytes written) may be."""

    label: str
    script: str
    size: int
    quick_size: int
    unit: str
    options: tuple[str, ...]
    target: float
    frozen: bool = False  # plain is the faster of `python SCRIPT` and the FROZEN run
    max_bytes: int | None = None


BARS = (
    Bar("elementwise chain, `--format json`", "benchmarks/loops/chain.py", 1_000_000, 20_000, "ops",
        ("--format", "json"), 3.0),
    Bar("wrong update with retain_grad()", "benchmarks/loops/wrong_update_retain_train.py", 1_000, 100, "steps",
        (), 2.5, max_bytes=20 * MB),
    Bar("steady MLP loop with Adam", "benchmarks/loops/mlp_train.py", 1_000, 100, "steps", (), 1.2, frozen=True),
    Bar("polynomial loop (random control flow)", "benchmarks/loops/polynomial.py", 30_000, 1_000, "iterations",
        (), 2.0),
)


def commands(bar: Bar, size: int) -> dict[str, list[str]]:
    """The command lines of a bar as shown in results.md; OUT is render's output folder."""
    script = [bar.script, str(size)]
    lines = {"plain": ["python", *script]}
    if bar.frozen:
        lines["frozen"] = ["python", "-c", "FROZEN", *script]
    lines["render"] = [*GRAPHSCOPE, "render", *bar.options, "-o", "OUT", *script]
    return lines


def executable(line: list[str], out: Path) -> list[str]:
    """A shown command line as run: this Python, the console script, the FROZEN code, the folder."""
    words = {"python": sys.executable, "FROZEN": FROZEN, "OUT": str(out)}
    if GRAPHSCOPE == ["graphscope"]:
        words["graphscope"] = str(CONSOLE)
    return [words.get(word, word) for word in line]


def folder_bytes(folder: Path) -> int:
    """The bytes of every file under a folder."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


class Render(Command):
    """`graphscope render` into a folder emptied before each run; keeps the bytes it wrote."""

    def __init__(self, argv: list[str], limit: float, out: Path):
        super().__init__(argv, limit)
        self.out = out
        self.written: int | None = None

    def __call__(self, graph: object) -> None:
        shutil.rmtree(self.out, ignore_errors=True)
        self.written = None
        super().__call__(graph)
        self.written = folder_bytes(self.out)


@dataclass(frozen=True)
class BarRow:
    """One bar measured: median wall times, bytes written, exit statuses."""

    bar: Bar
    size: int
    timings: Timings
    written: int | None
    statuses: tuple[int | None, ...]

    @property
    def plain(self) -> Outcome:
        """The plain run the bar compares with: for a frozen bar the faster of the two."""
        runs = [self.timings[name] for name in ("plain", "frozen") if name in self.timings.medians]
        times = [run for run in runs if not isinstance(run, str)]
        return min(times) if times else runs[0]

    @property
    def ratio(self) -> Outcome:
        """render ÷ plain, or why there is none."""
        return ratio(self.timings["render"], self.plain)

    @property
    def met(self) -> bool:
        """Every process exited 0, the ratio is within the target and the bytes within theirs."""
        within_bytes = self.bar.max_bytes is None or (self.written is not None and self.written <= self.bar.max_bytes)
        return (not isinstance(self.ratio, str) and self.ratio <= self.bar.target and within_bytes
                and all(status == 0 for status in self.statuses))


def measure(bar: Bar, size: int, repeats: int, limit: float, budget: float) -> BarRow:
    """Plain (and frozen) and render in fresh processes, taking turns for `repeats` rounds."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out"
        lines = {name: executable(line, out) for name, line in commands(bar, size).items()}
        tools = {name: Command(line, limit) for name, line in lines.items() if name != "render"}
        render = Render(lines["render"], limit, out)
        timings = interleaved({**tools, "render": render}, lambda: None, repeats, budget=budget)
        statuses = tuple(tool.status for tool in [*tools.values(), render])
        return BarRow(bar, size, timings, render.written, statuses)


def target(bar: Bar) -> str:
    """`≤ x2.5, ≤ 20 MB`."""
    bound = f"≤ x{bar.target:g}"
    return bound if bar.max_bytes is None else f"{bound}, ≤ {bar.max_bytes / MB:g} MB"


def written(row: BarRow) -> str:
    """Bytes written, in MB and exactly; a dash when the render did not finish."""
    return "-" if row.written is None else f"{row.written / MB:.3g} MB ({row.written:,} B)"


def statuses(row: BarRow) -> str:
    """`0 / 0 / 0`: the exit status of each process, in the order they ran; `-` when stopped."""
    return " / ".join("-" if status is None else str(status) for status in row.statuses)


def command_lines(rows: list[BarRow]) -> str:
    """Each bar's command lines, exactly as run from the repository root."""
    items = []
    for row in rows:
        shown = "; ".join(f"{name}: `{' '.join(line)}`" for name, line in commands(row.bar, row.size).items())
        items.append(f"- {row.bar.label}: {shown}")
    return "\n".join(items)


def markdown(rows: list[BarRow], limit: float, budget: float) -> str:
    """The bars table, the command lines and the method."""
    body = [
        [f"{row.bar.label}, {row.size:,} {row.bar.unit}", report.seconds(row.timings["plain"]),
         report.seconds(row.timings["frozen"]) if row.bar.frozen else "-", report.seconds(row.timings["render"]),
         report.times(row.ratio), target(row.bar), "yes" if row.met else "no", written(row), statuses(row),
         str(row.timings.rounds)]
        for row in rows
    ]
    return "\n\n".join([
        "## The bars of issue #18: `graphscope render` ÷ the plain script",
        "Wall time of whole processes, each started fresh from the repository root with "
        "`OMP_NUM_THREADS=1`, including starting Python and importing torch. In each round the "
        "commands run one after the other (plain, frozen where there is one, then render); the "
        "times are medians over the rounds shown, and no new round starts after "
        f"{budget:g} s on one bar. A process still running at {limit:g} s is stopped: its time "
        f"reads `> {limit:g} s` and the bar is not met. `ratio` is render ÷ plain; for the MLP loop "
        "plain is the faster of `python SCRIPT` and `frozen`, the script run with torch imported "
        "and everything alive frozen first (`gc.freeze()`), as the `graphscope` command runs it. "
        "`bytes written` sums every file `render` left in its output folder (emptied before each "
        "run; MB = 10^6 bytes). A bar is met when its ratio (and bytes) are within the target and "
        "every process exited 0.",
        report.table(("bar", "plain", "frozen", "render", "ratio", "target", "met", "bytes written",
                      "exit (in order)", "rounds"), body),
        "Command lines (`OUT` is a fresh temporary folder; `FROZEN` is "
        f"`{FROZEN}`):\n\n" + command_lines(rows),
    ])
