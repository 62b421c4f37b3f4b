"""The `graphscope` command: a thin click layer over the public API."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from graphscope.errors import GraphscopeError
from graphscope.renderers.engine import ENGINES

USAGE_ERROR = 2


class _Group(click.Group):
    """Turns GraphscopeError into a one-line message and exit status 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except GraphscopeError as exc:
            click.echo(f"graphscope: error: {exc}", err=True)
            ctx.exit(USAGE_ERROR)


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
@click.option("--saved", is_flag=True, help="Also draw the tensors saved for backward.")
def render(script: str, script_args: tuple[str, ...], out_dir: str, formats: str, engine: str,
           saved: bool) -> None:
    """Run SCRIPT and draw the autograd graph of every backward it makes.

    Each call of Tensor.backward, torch.autograd.backward or torch.autograd.grad is a step,
    numbered from 0. Arguments after SCRIPT go to the script, except graphscope's own
    options; put the script's arguments after -- when they clash (render train.py -- -o x).
    """
    from graphscope.output import check_output, parse_formats, summary, write_steps
    from graphscope.runner import record_script

    directory = Path(out_dir)
    chosen = parse_formats(formats)
    check_output(directory, chosen, engine)
    session, result = record_script(script, script_args, saved=saved)
    write_steps(session.snapshots, directory, chosen, engine)
    sys.stdout.flush()
    click.echo(summary(session.snapshots, directory, chosen), err=True)
    sys.exit(result.status)
