"""Saving a run (every captured step) to `session.json` and loading it back, torch-free."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, Sequence

from graphscope.errors import GraphscopeError
from graphscope.files import write_atomic
from graphscope.model import JSON_FORMAT_VERSION, Finding, Run, Snapshot, compact_json, from_node_link, to_node_link

SESSION_FILE = "session.json"


def json_pieces(run: Run) -> Iterator[str]:
    """The compact, deterministic JSON of a run a step at a time, so a long run is never held as
    one string: `steps` sorts last among the keys, so it is written after the others."""
    head = compact_json({"format": JSON_FORMAT_VERSION, "script": run.script, "status": run.status,
                         "findings": [f.to_dict() for f in run.findings]})
    yield head[:-1] + ',"steps":['
    for i, snapshot in enumerate(run.snapshots):
        yield ("," if i else "") + compact_json(to_node_link(snapshot))
    yield "]}\n"


def run_from_json(text: str) -> Run:
    """Inverse of `json_pieces`."""
    data = json.loads(text)
    return Run([from_node_link(step) for step in data["steps"]], data.get("script"), data.get("status"),
               [Finding.from_dict(f) for f in data.get("findings", ())])


def save(snapshots: Sequence[Snapshot], path: str | os.PathLike[str], script: str | None = None,
         status: int | None = None, findings: Sequence[Finding] = ()) -> Path:
    """Write every step of a run, and its findings, to one JSON file, atomically."""
    run = Run(list(snapshots), script, status, list(findings))
    return write_atomic(Path(path), (piece.encode("utf-8") for piece in json_pieces(run)))


def load(path: str | os.PathLike[str]) -> Run:
    """A run saved by `save` (a session.json, or the folder holding one), or one step's JSON."""
    source = Path(path)
    if source.is_dir():
        source = source / SESSION_FILE
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise GraphscopeError(f"cannot read {str(source)!r}: {exc.strerror}") from None
    try:
        data = json.loads(text)
        if "steps" in data:
            return run_from_json(text)
        return Run([from_node_link(data)])
    except (ValueError, KeyError, TypeError) as exc:
        raise GraphscopeError(f"{str(source)!r} is not a graphscope run or step file ({exc})") from None
