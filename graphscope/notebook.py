"""How a Snapshot and a recording Session show themselves: a text tree for `print()`, and in
Jupyter the picture of the graph and the interactive report.

The model knows nothing of its renderers, so the display methods are given to the classes
here, once, when graphscope is imported (`install()`, from `graphscope/__init__.py`).
"""

from __future__ import annotations

import html
from typing import Sequence

from graphscope.analysis.steps import AUTO, StepSpec, select
from graphscope.capture.session import Session
from graphscope.model import Run, Snapshot
from graphscope.renderers import to_svg
from graphscope.renderers.text import text_tree
from graphscope.report.builder import layout_steps, report_html

NOTEBOOK_HEIGHT = 640


def notebook_html(snapshots: Sequence[Snapshot], steps: StepSpec = AUTO, engine: str = "embedded") -> str:
    """The report in a sandboxed frame, for Jupyter; the page runs isolated from the notebook."""
    if not snapshots:
        return "<p>graphscope: no backward or autograd.grad call captured yet</p>"
    run = Run(list(snapshots))
    selection = select(steps, run.snapshots)
    page = report_html(run, layout_steps(run, selection.steps, engine), selection.reason)
    return (f'<iframe sandbox="allow-scripts" style="width:100%;height:{NOTEBOOK_HEIGHT}px;'
            f'border:1px solid #ddd" srcdoc="{html.escape(page, quote=True)}"></iframe>')


def _snapshot_svg(snapshot: Snapshot) -> str:
    """Jupyter: the picture of one graph."""
    return to_svg(snapshot).decode("utf-8")


def _snapshot_html(snapshot: Snapshot) -> str:
    """Jupyter: the interactive view of one graph."""
    return notebook_html([snapshot])


def _session_svg(session: Session) -> str | None:
    """Jupyter: the graph of the latest step, if there is one."""
    return to_svg(session.snapshots[-1]).decode("utf-8") if session.snapshots else None


def _session_html(session: Session) -> str:
    """Jupyter: the interactive report of the steps so far."""
    return notebook_html(session.snapshots)


def install() -> None:
    """Give Snapshot its text tree and both classes their Jupyter display."""
    Snapshot.__str__ = text_tree  # type: ignore[method-assign]
    Snapshot._repr_svg_ = _snapshot_svg  # type: ignore[attr-defined]
    Snapshot._repr_html_ = _snapshot_html  # type: ignore[attr-defined]
    Session._repr_svg_ = _session_svg  # type: ignore[attr-defined]
    Session._repr_html_ = _session_html  # type: ignore[attr-defined]
