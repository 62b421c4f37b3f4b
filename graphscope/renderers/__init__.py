"""Renderers: a Snapshot in, text or image bytes out. They take only the model."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from graphscope.analysis.spans import MAX_RANKS, layout_cost, note
from graphscope.errors import GraphscopeError, LayoutError
from graphscope.files import check_file_target, write_atomic
from graphscope.model import Finding, Snapshot
from graphscope.analysis.diff import SnapshotDiff
from graphscope.renderers.diffdot import diff_to_dot, drawable_union
from graphscope.renderers.dot import to_dot
from graphscope.renderers.engine import DEFAULT_TIMEOUT, choose_engine, layout
from graphscope.renderers.text import text_tree
from graphscope.analysis.scaling import unscaled
from graphscope.analysis.view import ViewOptions, readable

FORMATS = ("svg", "png", "pdf", "dot", "json", "txt")
UNLABELLED = ("gradients are not written on the edges: with them Graphviz would lay out {ranks:,} ranks, "
              "more than the {limit:,} graphscope allows it; each edge's width and tooltip still show its gradient")


def pictured(snapshot: Snapshot, view: ViewOptions = ViewOptions()) -> Snapshot:
    """What a picture shows of a snapshot: its readable view, gradients unscaled where a
    GradScaler scaled the loss. Kept with the snapshot: a step's SVG file and the report
    show the same view, which a large graph would otherwise pay for twice."""
    views = snapshot.__dict__.setdefault("_pictured", {})
    if view not in views:
        views[view] = readable(unscaled(snapshot), view)
    return views[view]


def picture_dot(snapshot: Snapshot, view: ViewOptions = ViewOptions(), findings: Sequence[Finding] = ()) -> str:
    """DOT text of the view a picture of the snapshot shows, without the gradients written on
    its edges (a note says so) when only that makes it fit; a LayoutError at once, instead of
    a layout that would run out of time or stack, when not even the coarsest view fits."""
    shown = pictured(snapshot, view)
    cost = layout_cost(shown)
    if cost.fits():
        return to_dot(shown, findings)
    if replace(cost, labelled=False).fits():
        return to_dot(note(shown, UNLABELLED.format(ranks=cost.dot_ranks, limit=MAX_RANKS)), findings,
                      edge_labels=False)
    raise LayoutError(f"too big to lay out in time even as a view ({cost}); session.json holds every node")


def to_svg(snapshot: Snapshot, engine: str = "embedded", timeout: float | None = DEFAULT_TIMEOUT,
           view: ViewOptions = ViewOptions(), findings: Sequence[Finding] = ()) -> bytes:
    """SVG bytes of a snapshot, in its readable view (large graphs are summarised), with the
    doctor's findings about it as badges."""
    return layout(picture_dot(snapshot, view, findings), "svg", engine, timeout)


def to_bytes(snapshot: Snapshot, fmt: str, engine: str = "embedded",
             timeout: float | None = DEFAULT_TIMEOUT, view: ViewOptions = ViewOptions(),
             findings: Sequence[Finding] = ()) -> bytes:
    """The snapshot in one of FORMATS, as bytes; pictures show the readable view, data all of it,
    and pictures badge the nodes the doctor's `findings` concern."""
    if fmt == "dot":
        return to_dot(pictured(snapshot, view), findings).encode("utf-8")
    if fmt == "json":
        return snapshot.to_json().encode("utf-8")
    if fmt == "txt":
        return (text_tree(unscaled(snapshot)) + "\n").encode("utf-8")
    if fmt in ("svg", "png", "pdf"):
        return layout(picture_dot(snapshot, view, findings), fmt, engine, timeout)
    raise GraphscopeError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def format_for(path: str | os.PathLike[str], fmt: str | None) -> str:
    """The format asked for, else the one the file suffix names."""
    if fmt is None:
        fmt = Path(path).suffix.lstrip(".").lower()
        if not fmt:
            raise GraphscopeError(f"cannot tell the format of {os.fspath(path)!r}: give it a suffix "
                                  f"({', '.join(FORMATS)}) or pass format=")
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise GraphscopeError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def write(snapshot: Snapshot, path: str | os.PathLike[str], fmt: str | None = None,
          engine: str = "embedded", timeout: float | None = DEFAULT_TIMEOUT,
          view: ViewOptions = ViewOptions(), findings: Sequence[Finding] = ()) -> Path:
    """Write a snapshot to `path` atomically; the format comes from `fmt` or the suffix."""
    chosen = format_for(path, fmt)
    return write_atomic(Path(path), to_bytes(snapshot, chosen, engine, timeout, view, findings))


def check_diff_output(path: Path, fmt: str | None = None, engine: str = "embedded") -> str:
    """The format a diff picture at `path` is drawn in; a clear error, before any work, when it
    cannot be drawn so."""
    chosen = format_for(path, fmt)
    if chosen not in ("svg", "png", "pdf", "dot"):
        raise GraphscopeError(f"a diff is drawn as svg, png, pdf or dot, not {chosen}")
    if chosen != "dot":
        choose_engine(engine, chosen)
    check_file_target(path)
    return chosen


def write_diff(change: SnapshotDiff, path: Path, fmt: str | None = None, engine: str = "embedded",
               timeout: float | None = DEFAULT_TIMEOUT) -> Path:
    """Write the picture of a diff (svg, png, pdf or dot) atomically."""
    chosen = check_diff_output(path, fmt, engine)
    if chosen == "dot":
        return write_atomic(path, diff_to_dot(change).encode("utf-8"))
    data = layout(diff_to_dot(change, drawable_union(change)), chosen, engine, timeout)
    return write_atomic(path, data)
