"""Saving a run (every captured step) to `session.json` and loading it back, torch-free."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from graphscope.diff import SnapshotDiff, diff
from graphscope.errors import GraphscopeError
from graphscope.files import write_atomic
from graphscope.growth import GrowthRow, growth
from graphscope.model import JSON_FORMAT_VERSION, Finding, Snapshot, compact_json, from_node_link, to_node_link

SESSION_FILE = "session.json"


@dataclass
class Run:
    """The steps of one recorded run, live or reloaded, with what is known of the script
    and what the doctor found in it."""

    snapshots: list[Snapshot] = field(default_factory=list)
    script: str | None = None
    status: int | None = None
    findings: list[Finding] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.snapshots)

    def __getitem__(self, step: int) -> Snapshot:
        return self.snapshots[step]

    def __str__(self) -> str:
        findings = f", {len(self.findings)} finding(s)" if self.findings else ""
        status = "" if self.status is None else f", exit status {self.status}"
        return f"run of {self.script or 'an unnamed script'}: {len(self)} step(s){status}{findings}"

    def growth(self) -> list[GrowthRow]:
        """Size and carried-over nodes per step."""
        return growth(self.snapshots)

    def diff(self, old: int, new: int) -> SnapshotDiff:
        """What changed between two steps (negative numbers count from the end)."""
        return diff(self.snapshots[old], self.snapshots[new])

    def to_json(self) -> str:
        """Compact, deterministic JSON of every step."""
        return "".join(self.json_pieces())

    def json_pieces(self) -> Iterator[str]:
        """The text of `to_json` a step at a time, so a long run is never held as one string:
        `steps` sorts last among the keys, so it is written after the others."""
        head = compact_json({"format": JSON_FORMAT_VERSION, "script": self.script, "status": self.status,
                         "findings": [f.to_dict() for f in self.findings]})
        yield head[:-1] + ',"steps":['
        for i, snapshot in enumerate(self.snapshots):
            yield ("," if i else "") + compact_json(to_node_link(snapshot))
        yield "]}\n"

    @classmethod
    def from_json(cls, text: str) -> Run:
        """Inverse of `to_json`."""
        data = json.loads(text)
        return cls([from_node_link(step) for step in data["steps"]], data.get("script"), data.get("status"),
                   [Finding.from_dict(f) for f in data.get("findings", ())])


def save(snapshots: Sequence[Snapshot], path: str | os.PathLike[str], script: str | None = None,
         status: int | None = None, findings: Sequence[Finding] = ()) -> Path:
    """Write every step of a run, and its findings, to one JSON file, atomically."""
    run = Run(list(snapshots), script, status, list(findings))
    return write_atomic(Path(path), (piece.encode("utf-8") for piece in run.json_pieces()))


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
            return Run.from_json(text)
        return Run([from_node_link(data)])
    except (ValueError, KeyError, TypeError) as exc:
        raise GraphscopeError(f"{str(source)!r} is not a graphscope run or step file ({exc})") from None
