"""The `graphscope` command: a thin click layer over the public API."""

from __future__ import annotations

import contextlib
import gc
import sys
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import click

from graphscope.analysis.view import DEFAULT_BUDGET, ViewOptions
from graphscope.capture.steady import GRADIENT_DETAILS
from graphscope.doctor.report import FAIL_LEVELS
from graphscope.errors import GraphscopeError
from graphscope.model import Snapshot
from graphscope.model.history import kept
from graphscope.renderers.engine import ENGINES

USAGE_ERROR = 2
FULL_PASS_AFTER = 100  # middle-generation passes between full ones (Python's default is 10)
PROCESS = "graphscope process"  # click's context object when the command runs as its own process
NPROC = click.option("--nproc", type=click.IntRange(min=1), default=None,
                     help="Start torchrun with N ranks on this machine: each rank writes OUT/rank-K/, "
                          "and OUT/index.html shows them all (doctor: the findings of every rank).")


class _Group(click.Group):
    """Turns GraphscopeError into a one-line message and exit status 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except GraphscopeError as exc:
            click.echo(f"graphscope: error: {exc}", err=True)
            ctx.exit(USAGE_ERROR)


def run() -> None:
    """The `graphscope` command as a process. What is alive before it starts (torch and
    graphscope, imported) is never garbage, so it is moved out of the collector's sight:
    the collector's full passes, during the user's script and at exit, skip it. A recording
    keeps a few objects a step, and that growth alone would start a full pass each time it
    grows by a quarter: the collector waits for FULL_PASS_AFTER middle passes, not 10,
    before it makes one (the young and middle passes collect as before)."""
    gc.freeze()
    young, middle, full = gc.get_threshold()
    gc.set_threshold(young, middle, max(full, FULL_PASS_AFTER))
    main(prog_name="graphscope", obj=PROCESS)


@contextlib.contextmanager
def _finishing(process: object) -> Iterator[None]:
    """The collector paused while a recorded run is read, checked and written: those records
    hold no cycles, and a young pass after each phase would scan every record it made. In the
    `graphscope` process (`process` is PROCESS) it stays paused to the end, which is near: the
    pass Python makes at exit still collects the script's garbage and runs its finalizers."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled and process is not PROCESS:
            gc.enable()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="graphscope")
def main() -> None:
    """See PyTorch's autograd graph: what it holds, what flowed back, and how it changes."""


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("script")
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
@click.option("-o", "--out", "out_dir", default="graphscope-out", show_default=True,
              help="Folder for step-NNNN.<format> files (earlier step files there are replaced).")
@click.option("--format", "formats", default="svg", show_default=True,
              help="Comma-separated: svg, png, pdf, dot, json, txt.")
@click.option("--engine", type=click.Choice(ENGINES), default="embedded", show_default=True,
              help="Layout engine: embedded WebAssembly Graphviz (same bytes everywhere), the "
                   "system `dot`, or auto (system when present).")
@click.option("--steps", default="auto", show_default=True,
              help="Steps to draw: auto (first 3, last, and where the structure changed, at most "
                   "20), all, every:N, step numbers (-1 is the last), combined with commas.")
@click.option("--saved", is_flag=True, help="Also draw the tensors saved for backward.")
@click.option("--no-source", is_flag=True, help="Do not record the file:line of each op (faster on "
                                                  "large models).")
@click.option("--no-report", is_flag=True, help="Do not write the HTML report (index.html).")
@click.option("--gradients", type=click.Choice(GRADIENT_DETAILS), default="auto", show_default=True,
              help="Per-edge gradients: auto records them at steps of a new shape and a spaced sample "
                   "(other steps of a steady loop, and graphs of over 100,000 ops, record what each "
                   "leaf received and its .grad); all records them everywhere (slower).")
@click.option("--budget", type=click.IntRange(min=1), default=DEFAULT_BUDGET, show_default=True,
              help="Pictures of bigger graphs collapse module calls and fold long chains and "
                   "identical calls in a row, to about this many nodes; the report opens them.")
@click.option("--depth", type=click.IntRange(min=1), default=None,
              help="Collapse module calls at this depth of their path (model.layers.0 is 3), or "
                   "shallower when that picture could not be laid out in seconds.")
@click.option("--full", is_flag=True, help="Draw every node; a graph too big to lay out in seconds is "
                                           "drawn as the most detailed view that can be, and its notes say so.")
@NPROC
def render(script: str, script_args: tuple[str, ...], out_dir: str, formats: str, engine: str,
           steps: str, saved: bool, no_source: bool, no_report: bool, gradients: str, budget: int,
           depth: int | None, full: bool, nproc: int | None) -> None:
    """Run SCRIPT and draw the autograd graph of every backward it makes.

    Each call of Tensor.backward, torch.autograd.backward or torch.autograd.grad is a step,
    numbered from 0. Arguments after SCRIPT go to the script, except graphscope's own
    options; put the script's arguments after -- when they clash (render train.py -- -o x).
    Under torchrun each rank writes OUT/rank-K/ and rank 0 writes OUT/index.html.
    """
    from graphscope import ranks as torchrun
    from graphscope.analysis.steps import StepSpec
    from graphscope.capture.runner import check_script, record_script
    from graphscope.doctor import diagnose
    from graphscope.output import check_output, parse_formats, summary, write_run, writing_aside
    from graphscope.progress import Progress

    chosen = parse_formats(formats)
    spec = StepSpec.parse(steps)
    check_output(Path(out_dir), chosen, engine)
    if nproc:
        check_script(script)
        sys.exit(torchrun.render_on_ranks(nproc, _for_each_rank(), Path(out_dir), Path(script).name))
    ranks = torchrun.ranks_from()
    directory = Path(out_dir) if ranks is None else torchrun.rank_folder(Path(out_dir), ranks.rank)
    captured: list[int] = []
    with Progress() as progress:
        with progress.watching(lambda: f"graphscope: captured {len(captured)} step(s)"):
            run = record_script(script, script_args, saved=saved, source=not no_source, on_step=captured.append,
                                gradients=gradients)
        with _finishing(click.get_current_context().obj), torchrun.finishing_writes(ranks):
            run = replace(run, snapshots=kept(run.snapshots))
            with writing_aside(run, directory, chosen, spec) as aside:
                run = replace(run, findings=diagnose(run))
                view = ViewOptions(budget=budget, depth=depth, full=full)
                try:
                    report = write_run(run, directory, chosen, spec, engine, progress.drawing, not no_report, view,
                                       aside)
                except KeyboardInterrupt:
                    click.echo("graphscope: interrupted while writing; every file written is complete", err=True)
                    sys.exit(130)
            if ranks:
                torchrun.mark_complete(directory, ranks, run.status, len(run.snapshots))
    sys.stdout.flush()
    click.echo(torchrun.prefixed(summary(run, report, directory, chosen), ranks), err=True)
    index = torchrun.index_for(Path(out_dir), ranks, run.script) if ranks else None
    if index:
        click.echo(index, err=True)
    sys.exit(run.status)


def _for_each_rank() -> list[str]:
    """This command line again for each rank torchrun starts: graphscope's options as given
    (less --nproc), then the script and, after --, its arguments."""
    ctx = click.get_current_context()
    arguments = [ctx.command.name or ""]
    for param in ctx.command.params:
        if isinstance(param, click.Argument) or param.name in (None, "nproc") or param.name not in ctx.params:
            continue
        value = ctx.params[param.name]
        if isinstance(param, click.Option) and param.is_flag:
            arguments += [param.opts[-1]] if value else []
        elif value is not None:
            arguments += [param.opts[-1], str(value)]
    return [*arguments, ctx.params["script"], "--", *ctx.params["script_args"]]


def _load_step(spec: str) -> Snapshot:
    """`RUN:STEP` (a folder or session.json, and a step number) or a step JSON file."""
    from graphscope.store import load

    path, _, step = spec.rpartition(":") if ":" in spec and not Path(spec).exists() else (spec, "", "")
    run = load(path)
    if not step:
        if len(run) != 1:
            raise GraphscopeError(f"{path} holds {len(run)} steps: name one, as {path}:STEP")
        return run[0]
    if not len(run):
        raise GraphscopeError(f"{spec}: {path} holds no step (the script made no backward call)")
    try:
        return run[int(step)]
    except (ValueError, IndexError):
        raise GraphscopeError(f"{spec}: {path} has steps 0 to {len(run) - 1}") from None


@main.command()
@click.argument("old")
@click.argument("new")
@click.option("-o", "--out", "out_file", default=None,
              help="Write the union of both graphs, changes coloured (.svg, .dot, .png, .pdf).")
@click.option("--engine", type=click.Choice(ENGINES), default="embedded", show_default=True,
              help="Layout engine for the picture.")
def diff(old: str, new: str, out_file: str | None, engine: str) -> None:
    """Compare two captured steps: nodes added, removed and carried over.

    OLD and NEW are a run folder or session.json with a step (graphscope-out:0,
    graphscope-out:-1) or a step's JSON file (graphscope-out/step-0003.json).
    """
    from graphscope.analysis.diff import diff as compare
    from graphscope.renderers import check_diff_output, write_diff

    if out_file:
        check_diff_output(Path(out_file), engine=engine)
    change = compare(_load_step(old), _load_step(new))
    click.echo(change.summary())
    if out_file:
        write_diff(change, Path(out_file), engine=engine)
        click.echo(f"wrote {out_file}")


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("script")
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
@click.option("--fail-on", type=click.Choice(FAIL_LEVELS), default="error",
              show_default=True, help="Exit with status 1 when a finding is at least this severe.")
@click.option("--json", "json_file", default=None, help="Also write the findings as JSON to this file "
                                                        "(- for standard output, and then the script's "
                                                        "own output goes to standard error).")
@NPROC
def doctor(script: str, script_args: tuple[str, ...], fail_on: str, json_file: str | None,
           nproc: int | None) -> None:
    """Run SCRIPT and name the autograd mistakes it makes: rule, line, and the fix.

    Findings go to standard error, after the script's own output; the exit status is 1 when
    one reaches --fail-on, so the command can guard a training script in CI. Arguments after
    SCRIPT go to the script (after -- when they clash with graphscope's own options).
    """
    import graphscope
    from graphscope import ranks as torchrun
    from graphscope.capture.runner import check_script
    from graphscope.doctor.report import fails, findings_json, report
    from graphscope.files import check_file_target, write_atomic

    ranks = None if nproc else torchrun.ranks_from()
    json_path = None if json_file in (None, "-") else torchrun.rank_file(Path(json_file), ranks)
    if json_path is not None:
        check_file_target(json_path)
    with contextlib.redirect_stdout(sys.stderr) if json_file == "-" else contextlib.nullcontext():
        if nproc:
            check_script(script)
            findings, name = torchrun.doctor_on_ranks(nproc, _for_each_rank()), Path(script).name
        else:
            run = graphscope.doctor(script, script_args)
            if ranks and ranks.launched_here:
                with torchrun.finishing_writes(ranks):
                    torchrun.keep_for_launch(run, ranks)
                sys.exit(run.status)
            findings, name = run.findings, run.script
    sys.stdout.flush()
    click.echo(torchrun.prefixed(report(findings, name), ranks), err=True)
    if json_file == "-":
        click.echo(findings_json(findings), nl=False)
    elif json_path is not None:
        write_atomic(json_path, findings_json(findings).encode("utf-8"))
    sys.exit(1 if fails(findings, fail_on) else 0)
