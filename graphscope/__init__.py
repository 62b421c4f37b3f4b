"""graphscope: see PyTorch's autograd graph, its gradients, and how it changes across steps.

    snap = graphscope.trace(loss)            # the graph, named as in your code
    snap = graphscope.capture(loss)          # ...and runs backward, recording every gradient
    graphscope.render(snap, "loss.svg")      # svg, png, pdf, dot, json or txt
    with graphscope.record() as session:     # every backward inside the block is a step
        ...
    graphscope.diff(session[0], session[3])  # what was added, removed, carried over
    graphscope.save(session.snapshots, "session.json"); run = graphscope.load("session.json")
    run = graphscope.doctor("train.py")      # run a script; run.findings names its autograd mistakes
    graphscope.diagnose(session)             # the same findings for a recorded block
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from graphscope import doctor as _doctor
from graphscope import notebook
from graphscope.analysis.diff import SnapshotDiff, diff
from graphscope.analysis.view import DEFAULT_BUDGET, ViewOptions
from graphscope.capture.runner import record_script
from graphscope.capture.session import Session, capture, record
from graphscope.capture.walker import trace
from graphscope.errors import GraphscopeError
from graphscope.model import Edge, Finding, GradStat, Node, NodeKind, Run, Snapshot
from graphscope.renderers import write
from graphscope.store import load, save

__all__ = [
    "Edge", "Finding", "GradStat", "GraphscopeError", "Node", "NodeKind", "Run", "Session", "Snapshot",
    "SnapshotDiff", "capture", "diagnose", "diff", "doctor", "load", "record", "render", "save", "trace",
]
__version__ = "0.1.0"

notebook.install()


def render(snapshot_or_tensor: Any, path: str | os.PathLike[str], format: str | None = None,
           engine: str = "embedded", budget: int = DEFAULT_BUDGET, depth: int | None = None,
           full: bool = False) -> Path:
    """Write a Snapshot (or the graph behind a tensor) to `path` as svg, png, pdf, dot, json or txt.

    Pictures of graphs above `budget` nodes collapse module calls (to `depth` if given) and
    fold long chains; `full=True` draws every node. JSON and text always hold everything.
    """
    view = ViewOptions(budget=budget, depth=depth, full=full)
    snapshot = snapshot_or_tensor if isinstance(snapshot_or_tensor, Snapshot) else trace(snapshot_or_tensor)
    return write(snapshot, path, format, engine, view=view)


def diagnose(run: Session | Run | Sequence[Snapshot], sources: Mapping[str, str] | None = None,
             root: str | os.PathLike[str] | None = None) -> list[Finding]:
    """Every finding for a recorded block (a Session), a Run or a list of snapshots, errors
    first; `sources` maps display paths to file text, read from `root` (the session's root,
    else the current folder) when not given."""
    if isinstance(run, Session):
        run = Run(run.snapshots, root=run.root, sites=run.sites)
    elif not isinstance(run, Run):
        run = Run(list(run))
    if root is not None:
        run = replace(run, root=os.fspath(root))
    return _doctor.diagnose(run, sources)


def doctor(script: str | os.PathLike[str], args: Sequence[str] = (), saved: bool = True,
           source: bool = True) -> Run:
    """Run a script like `graphscope doctor`: every step captured, and `run.findings`."""
    run = record_script(script, args, saved=saved, source=source)
    return replace(run, findings=_doctor.diagnose(run))
