"""Saving a run (every captured step) to `session.json` and loading it back, torch-free.

A run file (format 2) is JSON Lines, UTF-8, each line one compact JSON object:

1. the head: `{"format": 2, "script", "status", "findings", "steps": N}`;
2. N step lines, in step order: `graph` (the node-link data of what the step captured
   itself, as in a step's JSON), `whole` (false when the step reached history captured by
   an earlier step, which it then shares instead of repeating it), and how to join the
   two: `first`, `children`, `roots`, `tensors`, `refs`, `deep_leaves`, `deep_grads`,
   `freed` (see `graphscope.model.history.Partial`). A step whose graph repeats an earlier
   one is written as `like` (that step), its own `graph` attributes, its `tensors`, and
   `changes`: [node position, changed attributes] against the earlier step's records moved
   to this step, where its own ops ran in module calls numbered `calls_shift` later (0 when
   absent) and, when `saved_bytes` is false, counted no saved bytes;
3. the tail: `{"first_names": [...], "index": [...]}`: the first name each leaf was given,
   and the byte offset of each step line, then where the tail starts.

Loading reads the head and the tail; a step line is parsed when a step that needs it is
read. A graph that drags the history of 1,000 steps along is stored once, not 1,000 times.
Files of format 1 (one JSON object with every step whole, as graphscope wrote before) and
one step's JSON (`step-NNNN.json`) load as they always have.
"""

from __future__ import annotations

import json
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from graphscope.errors import GraphscopeError
from graphscope.files import write_atomic
from graphscope.model import Finding, Run, Snapshot, compact_json, from_node_link
from graphscope.model.records import paused_gc
from graphscope.model.history import Partial, Steps
from graphscope.model.partials import names_from_list, names_to_list, partial_from_dict, partial_to_dict

SESSION_FILE = "session.json"
RUN_FORMAT = 2


def _partials(snapshots: Sequence[Snapshot]) -> tuple[Sequence[Partial], Mapping[int, float], Mapping]:
    """What a run's steps are stored as: a session's partials (with their loss scales and
    first names), or each snapshot whole."""
    if isinstance(snapshots, Steps):
        names: dict = {}
        seen = None
        for partial in snapshots.partials:
            if partial.first_names is not seen:
                seen = partial.first_names
                names.update(seen)
        return snapshots.partials, snapshots.scales, names
    return [Partial(snapshot, 0, ()) for snapshot in snapshots], {}, {}


def json_lines(run: Run, graphs: Mapping[int, bytes] | None = None, lines: StepLines | None = None) -> Iterator[bytes]:
    """The run file of `run`, a piece of a line at a time, so a long run is never held as one
    string; `graphs` holds the node-link JSON of steps encoded already (step JSON files, as UTF-8),
    which a step that holds its whole graph writes as its `graph`. `lines` are its step lines
    written already (see `step_lines`), copied in as they are."""
    partials, _, names = _partials(run.snapshots)
    head = {"format": RUN_FORMAT, "script": run.script, "status": run.status,
            "findings": [f.to_dict() for f in run.findings], "steps": len(partials)}
    line = (compact_json(head) + "\n").encode("utf-8")
    yield line
    if lines is None:
        index: list[int] = []
        yield from step_lines(run.snapshots, graphs, index)
    else:
        index = lines.index
        yield from _copied(lines.path)
    tail = {"first_names": names_to_list(names), "index": [len(line) + at for at in index]}
    yield (compact_json(tail) + "\n").encode("utf-8")


def step_lines(snapshots: Sequence[Snapshot], graphs: Mapping[int, bytes] | None = None,
               index: list[int] | None = None) -> Iterator[bytes]:
    """The step lines of a run file, in pieces (see `json_lines`); each line's offset from the
    first, and where the last ends, are appended to `index`."""
    partials, scales, _ = _partials(snapshots)
    at, index = 0, [] if index is None else index
    for step, partial in enumerate(partials):
        template = partials[partial.like] if partial.like is not None else None
        graph = (graphs or {}).get(step)
        data = partial_to_dict(partial, scales.get(step), template, whole_graph=graph is None)
        index.append(at)
        for piece in _line(data, graph):
            at += len(piece)
            yield piece
    index.append(at)


@dataclass(frozen=True)
class StepLines:
    """A run's step lines written to a file of their own, and their offsets (see `step_lines`)."""

    path: Path
    index: list[int]


def _copied(path: Path, size: int = 1 << 24) -> Iterator[bytes]:
    """The bytes of a file, in pieces of `size`."""
    with path.open("rb") as file:
        while piece := file.read(size):
            yield piece


def _line(data: Mapping[str, Any], graph: bytes | None) -> list[bytes]:
    """One step line, as compact_json writes it, with `graph` (encoded JSON, as UTF-8) as its
    graph when `data` has none: in pieces, so a huge graph is not copied."""
    if "graph" in data or graph is None:
        return [(compact_json(data) + "\n").encode("utf-8")]
    keys = sorted([*data, "graph"])
    before = ",".join(f"{compact_json(key)}:{compact_json(data[key])}" for key in keys[:keys.index("graph")])
    after = "".join(f",{compact_json(key)}:{compact_json(data[key])}" for key in keys[keys.index("graph") + 1:])
    return [("{" + before + ("," if before else "") + '"graph":').encode("utf-8"), graph,
            (after + "}\n").encode("utf-8")]


def save(snapshots: Sequence[Snapshot], path: str | os.PathLike[str], script: str | None = None,
         status: int | None = None, findings: Sequence[Finding] = (),
         graphs: Mapping[int, bytes] | None = None, lines: StepLines | None = None) -> Path:
    """Write every step of a run, and its findings, to one run file, atomically; `graphs`
    maps step positions to their node-link JSON (as UTF-8) when it is encoded already, and
    `lines` holds the step lines when they are written already."""
    with paused_gc():  # reading every step makes records that hold no cycles
        return write_atomic(Path(path), json_lines(Run(snapshots, script, status, list(findings)), graphs, lines))


class StoredPartials(Sequence[Partial]):
    """The steps of a run file, each parsed from its line when first read (the file is mapped
    when loaded: replacing or deleting it afterwards changes nothing here)."""

    def __init__(self, path: Path, data: mmap.mmap, index: list[int], first_names: Mapping):
        self.path = path
        self.data = data
        self.index = index
        self.first_names = first_names
        self.parsed: dict[int, Partial] = {}

    def __len__(self) -> int:
        return len(self.index) - 1

    def __getitem__(self, step: Any) -> Any:
        if isinstance(step, slice):
            return [self[i] for i in range(*step.indices(len(self)))]
        found = self.parsed.get(step)
        if found is None:
            line = self.data[self.index[step]: self.index[step + 1]]
            try:
                found = partial_from_dict(json.loads(line), self.first_names, self.__getitem__)
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                raise GraphscopeError(f"step {step} of {str(self.path)!r} cannot be read ({exc})") from None
            self.parsed[step] = found
        return found


def _stored_run(path: Path, head: Mapping[str, Any]) -> Run:
    """A run of format 2: its head and its tail now, its steps when they are read."""
    if head.get("format") != RUN_FORMAT:
        raise GraphscopeError(f"{str(path)!r} is a run file of format {head.get('format')!r}; this graphscope "
                              f"reads formats 1 and {RUN_FORMAT}")
    with path.open("rb") as file:
        data = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    tail = json.loads(data[data.rfind(b"\n", 0, len(data) - 1) + 1:])
    steps = Steps(StoredPartials(path, data, tail["index"], names_from_list(tail["first_names"])))
    return Run(steps, head.get("script"), head.get("status"), [Finding.from_dict(f) for f in head.get("findings", ())])


def _whole_run(data: Mapping[str, Any]) -> Run:
    """A run of format 1 (every step whole, in one JSON object), or one step's JSON."""
    if "steps" not in data:
        return Run([from_node_link(data)])
    return Run([from_node_link(step) for step in data["steps"]], data.get("script"), data.get("status"),
               [Finding.from_dict(f) for f in data.get("findings", ())])


def load(path: str | os.PathLike[str]) -> Run:
    """A run saved by `save` (a session.json, or the folder holding one), or one step's JSON."""
    source = Path(path)
    if source.is_dir():
        source = source / SESSION_FILE
    try:
        with source.open("rb") as file:
            head = _head(file.readline())
        if head is not None:
            return _stored_run(source, head)
        return _whole_run(json.loads(source.read_bytes()))
    except OSError as exc:
        raise GraphscopeError(f"cannot read {str(source)!r}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise GraphscopeError(f"{str(source)!r} is not a graphscope run or step file ({exc})") from None


def _head(first_line: bytes) -> dict[str, Any] | None:
    """The head of a run file of format 2 or later; None for anything else."""
    try:
        data = json.loads(first_line)
    except ValueError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("steps"), int) else None
