"""Writing a run's steps to a folder, and the summary printed after it."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from graphscope.errors import GraphscopeError
from graphscope.model import Snapshot
from graphscope.renderers import FORMATS, write
from graphscope.renderers.engine import choose_engine

SUMMARY_ROWS = 12


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
                engine: str = "embedded",
                progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Write every snapshot in every format; returns the paths in step order."""
    clear_stale(directory, formats)
    paths = []
    for done, snapshot in enumerate(snapshots, 1):
        for fmt in formats:
            paths.append(write(snapshot, step_path(directory, snapshot.step, fmt), fmt, engine))
        if progress:
            progress(done, len(snapshots))
    return paths


def summary(snapshots: Sequence[Snapshot], directory: Path, formats: Sequence[str]) -> str:
    """A few lines: how many steps, their sizes, and where the files are."""
    if not snapshots:
        return "graphscope: no backward or autograd.grad call was made: nothing captured"
    calls = sorted({s.call for s in snapshots})
    lines = [f"graphscope: captured {len(snapshots)} step(s) ({', '.join(calls)})"]
    shown = list(snapshots[: SUMMARY_ROWS - 1]) + ([snapshots[-1]] if len(snapshots) >= SUMMARY_ROWS else [])
    for i, snapshot in enumerate(shown):
        if i == SUMMARY_ROWS - 1:
            lines.append(f"  ... {len(snapshots) - SUMMARY_ROWS} more")
        lines.append(f"  step {snapshot.step:>4}  {snapshot.call:<8}  {len(snapshot.nodes):>6} nodes  "
                     f"{len(snapshot.edges):>6} edges")
    first, last = snapshots[0].step, snapshots[-1].step
    files = ", ".join(f"step-{first:04d}.{f}" + (f" … step-{last:04d}.{f}" if last != first else "") for f in formats)
    lines.append(f"wrote {files} to {directory}/")
    return "\n".join(lines)
