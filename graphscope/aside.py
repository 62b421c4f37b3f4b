"""The part of a run's files that no finding changes, written by a child process while this one
diagnoses the run: the step lines of session.json and the chosen steps' JSON files. On a
machine with a core to spare, encoding them costs `graphscope render` no time of its own.

The child is forked (Linux only: elsewhere, or when forking fails, nothing is written aside
and `write_run` writes it all itself). It runs no torch: a recording computes every queued
gradient statistic when it ends. It writes each file atomically and leaves by `os._exit`, so nothing
of this process (buffers, exit handlers) runs twice. When it fails, or this process stops
waiting for it, its files are removed and the work is done here: nothing is lost either way.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from graphscope.analysis.steps import Selection
from graphscope.files import write_atomic
from graphscope.model import Run
from graphscope.model.records import paused_gc
from graphscope.model.snapshot import node_link_json
from graphscope.store import StepLines, step_lines


@dataclass
class Aside:
    """A child writing a run's step lines (to `body`, their offsets to `index` when done) and
    the JSON files of the chosen steps (`steps`)."""

    pid: int
    body: Path
    index: Path
    steps: tuple[Path, ...]
    selection: Selection | None  # the steps chosen to be drawn, when their JSON is written aside
    exited: int | None = None

    def wait(self) -> StepLines | None:
        """The step lines once the child wrote them all, else None (it failed: write them here)."""
        if self.exited is None:
            self.exited = _exit_status(self.pid)
        if self.exited != 0:
            return None
        try:
            return StepLines(self.body, json.loads(self.index.read_bytes()))
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """Make sure the child is gone, and its own files with it (not the step files it completed)."""
        if self.exited is None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGTERM)
            self.exited = _exit_status(self.pid)
        for path in (self.body, self.index):
            with contextlib.suppress(OSError):
                path.unlink()


def _exit_status(pid: int) -> int:
    """Wait for child `pid`; its exit code (-1 when a signal ended it)."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            return -1
        return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else -1


def start(run: Run, selection: Selection | None, json_paths: Sequence[Path], directory: Path) -> Aside | None:
    """Fork a child that writes the run's step lines to a scratch file in `directory` and,
    with a `selection`, the JSON of its steps to `json_paths`; None where nothing is
    written aside."""
    if not run.snapshots or not sys.platform.startswith("linux"):
        return None
    try:
        fd, body = tempfile.mkstemp(prefix=".session.json.", suffix=".lines.tmp", dir=directory)
        os.close(fd)
        with warnings.catch_warnings():  # 3.12+ warns of forking beside threads: the child runs none
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError:
        return None
    if pid == 0:
        _child(run, selection.steps if selection else (), json_paths, Path(body))
    return Aside(pid, Path(body), Path(body + ".index"), tuple(json_paths), selection)


def _child(run: Run, positions: Sequence[int], json_paths: Sequence[Path], body: Path) -> None:
    """In the child: write the steps' JSON files and the step lines, then leave at once."""
    status = 1
    try:
        signal.signal(signal.SIGTERM, _stopped)
        with paused_gc():
            encoded = [node_link_json(run.snapshots[i]).encode("utf-8") for i in positions] if json_paths else []
            for path, text in zip(json_paths, encoded):
                write_atomic(path, (text, b"\n"))
            index: list[int] = []
            write_atomic(body, step_lines(run.snapshots, dict(zip(positions, encoded)), index))
            write_atomic(Path(f"{body}.index"), json.dumps(index).encode("utf-8"))
        status = 0
    except BaseException:  # noqa: BLE001 - whatever happens, this process goes no further
        status = 1
    finally:
        os._exit(status)


def _stopped(*_: object) -> None:
    """SIGTERM in the child: unwind, so a file being written is removed, not left half done."""
    raise SystemExit(1)
