"""Writing a run's steps to a folder, and the summary printed after it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from graphscope.analysis.growth import GrowthRow, growth, is_growing
from graphscope.analysis.steps import AUTO, Selection, StepSpec, select
from graphscope.analysis.view import ViewOptions
from graphscope.aside import Aside, start
from graphscope.doctor.report import report as doctor_report
from graphscope.errors import GraphscopeError, LayoutError
from graphscope.files import write_atomic
from graphscope.model import Finding, Run, Snapshot
from graphscope.model.snapshot import node_link_json
from graphscope.model.records import paused_gc
from graphscope.renderers import FORMATS, write
from graphscope.renderers.engine import choose_engine
from graphscope.renderers.growth import growth_svg, growth_table
from graphscope.report.builder import REPORT_FILE, layout_steps, report_chart, write_report
from graphscope.store import SESSION_FILE, save

GROWTH_FILE = "growth.svg"
# Fewer steps leave the doctor too little to do while a child writes: a child reading a
# single step of 1,000,000 ops (copying each page of the records it touches) took 14.5 s
# where this process takes 9 s.
ASIDE_AFTER_STEPS = 100


def parse_formats(text: str) -> list[str]:
    """`svg,json` -> ["svg", "json"]; unknown names are an error that lists the known ones."""
    formats = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not formats:
        raise GraphscopeError(f"no format given; choose from {', '.join(FORMATS)}")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise GraphscopeError(f"unknown format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    return list(dict.fromkeys(formats))


def step_path(directory: Path, step: int, fmt: str) -> Path:
    """`DIR/step-0003.svg`."""
    return directory / f"step-{step:04d}.{fmt}"


def check_output(directory: Path, formats: Sequence[str], engine: str) -> None:
    """Fail before running anything when the folder or the engine cannot work."""
    for fmt in formats:
        if fmt in ("svg", "png", "pdf"):
            choose_engine(engine, fmt)
    if directory.exists() and not directory.is_dir():
        raise GraphscopeError(f"output folder {str(directory)!r} is a file")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GraphscopeError(f"cannot create output folder {str(directory)!r}: {exc.strerror}") from None


def clear_stale(directory: Path, formats: Sequence[str]) -> None:
    """Remove step files of an earlier run, so the folder shows this run only."""
    for fmt in formats:
        for old in directory.glob(f"step-[0-9]*.{fmt}"):
            old.unlink()


def write_steps(snapshots: Sequence[Snapshot], directory: Path, formats: Sequence[str],
                engine: str = "embedded", progress: Callable[[int, int], None] | None = None,
                findings: Sequence[Finding] = (), view: ViewOptions = ViewOptions(),
                encoded: Sequence[bytes | None] = ()) -> tuple[list[Path], list[str]]:
    """Write the given snapshots in every format, pictures badged with the doctor's findings
    (`encoded` holds the node-link JSON of some, as UTF-8 already); returns the paths in step
    order, and a line for each picture Graphviz could not lay out (the others are still written)."""
    paths, not_drawn = [], []
    for done, snapshot in enumerate(snapshots, 1):
        text = encoded[done - 1] if done <= len(encoded) else None
        for fmt in formats:
            path = step_path(directory, snapshot.step, fmt)
            if fmt == "json" and text is not None:
                paths.append(write_atomic(path, (text, b"\n")))
                continue
            try:
                paths.append(write(snapshot, path, fmt, engine, view=view, findings=findings))
            except LayoutError as exc:
                not_drawn.append(f"{path.name}: {exc}")
        if progress:
            progress(done, len(snapshots))
    return paths, not_drawn


@dataclass(frozen=True)
class Report:
    """What `write_run` wrote, for the summary."""

    selection: Selection
    rows: list[GrowthRow]
    paths: list[Path]
    not_drawn: list[str] = field(default_factory=list)


def _report_svgs(run: Run, positions: Sequence[int], directory: Path, formats: Sequence[str], engine: str,
                 progress: Callable[[int, int], None] | None, view: ViewOptions,
                 not_drawn: list[str]) -> dict[int, bytes]:
    """The SVG of each drawn step for the report: the files just written (a step whose layout
    failed has none), else a fresh layout."""
    if "svg" not in formats:
        return layout_steps(run, positions, engine, progress, view, not_drawn)
    paths = {i: step_path(directory, run.snapshots[i].step, "svg") for i in positions}
    return {i: path.read_bytes() for i, path in paths.items() if path.exists()}


@contextlib.contextmanager
def writing_aside(run: Run, directory: Path, formats: Sequence[str], steps: StepSpec = AUTO) -> Iterator[Aside | None]:
    """While the block runs (the doctor reads the run), a child process writes what no
    finding changes: session.json's step lines and the chosen steps' JSON (see
    graphscope.aside), for a run of ASIDE_AFTER_STEPS steps or more. Give what this yields to
    `write_run`; None where nothing is written aside."""
    aside = None
    if len(run.snapshots) >= ASIDE_AFTER_STEPS:
        # A chosen step's line holds its JSON: with JSON files, the steps are chosen first.
        selection = select(steps, run.snapshots) if "json" in formats else None
        json_paths = [step_path(directory, run.snapshots[i].step, "json") for i in selection.steps] if selection else []
        aside = start(run, selection, json_paths, directory)
    try:
        yield aside
    finally:
        if aside is not None:
            aside.stop()


def write_run(run: Run, directory: Path, formats: Sequence[str], steps: StepSpec = AUTO,
              engine: str = "embedded", progress: Callable[[int, int], None] | None = None,
              report: bool = True, view: ViewOptions = ViewOptions(), aside: Aside | None = None) -> Report:
    """Everything a run produces: session.json (all steps) and growth.svg first, so no picture
    can lose them, then the chosen steps and index.html; `aside` (see `writing_aside`) has
    written part of it already, unless it failed."""
    with paused_gc():  # reading every step makes records that hold no cycles
        clear_stale(directory, FORMATS)
        selection = aside.selection if aside and aside.selection else select(steps, run.snapshots)
        chosen = [run.snapshots[i] for i in selection.steps]
        lines = aside.wait() if aside else None
        # A step's JSON file and its line in session.json share one encoding of its graph.
        encoded = [node_link_json(s).encode("utf-8") for s in chosen] if "json" in formats and lines is None else []
        paths = [save(run.snapshots, directory / SESSION_FILE, run.script, run.status, run.findings,
                      dict(zip(selection.steps, encoded)), lines)]
        if lines is not None:
            paths += aside.place_steps()
        rows = growth(run.snapshots)
        chart = growth_svg(rows) if rows else None
        if chart:
            paths.append(write_atomic(directory / GROWTH_FILE, chart.encode("utf-8")))
        drawn = [fmt for fmt in formats if not (fmt == "json" and lines is not None)]
        written, not_drawn = write_steps(chosen, directory, drawn, engine, progress, run.findings, view, encoded)
        del encoded  # the report lays out pictures next: let a huge graph's text go first
        paths += written
        if report:
            svgs = _report_svgs(run, selection.steps, directory, formats, engine, progress, view, not_drawn)
            note = what_was_drawn(selection, not_drawn) + "".join(f"; not drawn: {line}" for line in not_drawn)
            paths.append(write_report(run, directory / REPORT_FILE, svgs, note, view, report_chart(rows, chart)))
        return Report(selection, rows, paths, not_drawn)


def graph_break_lines(run: Run) -> list[str]:
    """`torch.compile split the code in 2 places (graph breaks):` and one line per place."""
    if not run.graph_breaks:
        return []
    lines = [f"torch.compile split the code in {len(run.graph_breaks)} place(s) (graph breaks):"]
    return lines + [f"  {found.location}: {found.reason}" if found.reason else f"  {found.location}"
                    for found in run.graph_breaks]


def what_was_drawn(selection: Selection, not_drawn: Sequence[str]) -> str:
    """Which steps were chosen, said as drawn only when every picture of them was."""
    if not not_drawn or not selection.reason.startswith("drew "):
        return selection.reason
    return "chose " + selection.reason.removeprefix("drew ") + f"; {len(not_drawn)} picture(s) not drawn"


def summary(run: Run, report: Report, directory: Path, formats: Sequence[str]) -> str:
    """A few lines: how many steps, their sizes, what was drawn, where the files are, and
    what the doctor found."""
    snapshots = run.snapshots
    if not snapshots:
        nothing = "graphscope: nothing captured: no backward or autograd.grad call ran on a tensor with an autograd graph"
        return "\n\n".join([nothing, doctor_report(run.findings, run.script)] if run.findings else [nothing])
    calls = sorted({s.call for s in snapshots})
    lines = [f"graphscope: captured {len(snapshots)} step(s) ({', '.join(calls)})", growth_table(report.rows)]
    if is_growing(report.rows):
        last = report.rows[-1]
        lines.append(f"the graph grows: step {last.step} carries {last.carried} node(s) over from earlier "
                     "steps (see growth.svg)")
    lines += graph_break_lines(run)
    lines.append(what_was_drawn(report.selection, report.not_drawn))
    written = {(path.stem, path.suffix[1:]) for path in report.paths}
    names = [f"step-{snapshots[i].step:04d}" for i in report.selection.steps]
    drawn = [name for name in names if any((name, fmt) in written for fmt in formats)]
    kinds = [fmt for fmt in formats if any((name, fmt) in written for name in drawn)]
    shown = ", ".join(drawn[:6]) + (f", … {drawn[-1]}" if len(drawn) > 6 else "")
    steps = f"{shown} ({', '.join(kinds)}), " if drawn else ""
    lines.append(f"wrote {steps}{GROWTH_FILE} and {SESSION_FILE} to {directory}/")
    lines += [f"not drawn: {line}" for line in report.not_drawn]
    if report.not_drawn:
        lines.append("every step is in session.json, and the report draws what it can on demand")
    if directory / REPORT_FILE in report.paths:
        lines.append(f"open {directory / REPORT_FILE} in a browser to step through the run")
    return "\n".join(lines) + "\n\n" + doctor_report(run.findings, run.script)
