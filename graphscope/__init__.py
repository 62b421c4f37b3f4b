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
from pathlib import Path
from typing import Any

from graphscope.errors import GraphscopeError
from graphscope.diagnose import diagnose, doctor
from graphscope.model import Edge, Finding, GradStat, Node, NodeKind, Snapshot
from graphscope.renderers import as_snapshot, write
from graphscope.diff import SnapshotDiff, diff
from graphscope.session import Session, capture, record
from graphscope.store import Run, load, save
from graphscope.view import DEFAULT_BUDGET, ViewOptions
from graphscope.walker import trace

__all__ = [
    "Edge", "Finding", "GradStat", "GraphscopeError", "Node", "NodeKind", "Run", "Session", "Snapshot",
    "SnapshotDiff", "capture", "diagnose", "diff", "doctor", "load", "record", "render", "save", "trace",
]
__version__ = "0.1.0"


def render(snapshot_or_tensor: Any, path: str | os.PathLike[str], format: str | None = None,
           engine: str = "embedded", budget: int = DEFAULT_BUDGET, depth: int | None = None,
           full: bool = False) -> Path:
    """Write a Snapshot (or the graph behind a tensor) to `path` as svg, png, pdf, dot, json or txt.

    Pictures of graphs above `budget` nodes collapse module calls (to `depth` if given) and
    fold long chains; `full=True` draws every node. JSON and text always hold everything.
    """
    view = ViewOptions(budget=budget, depth=depth, full=full)
    return write(as_snapshot(snapshot_or_tensor), path, format, engine, view=view)
