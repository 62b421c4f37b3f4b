"""Runs under torchrun: one capture per rank, and one index of them all.

torchrun starts one process per rank and tells each its place in the environment (`RANK`,
`WORLD_SIZE`, `LOCAL_RANK`). Under it, each rank writes its own folder `DIR/rank-K/` and, last,
`rank.json`, which says the folder is complete and which launch wrote it (so a folder left by
an earlier run is never taken for this one's). Rank 0 then waits for the other ranks of its
machine and writes `DIR/index.html`. `--nproc N` starts torchrun itself; the ranks then leave
the index to graphscope, which writes it once torchrun has returned, from the ranks that
completed: a rank that died is listed as such.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from graphscope.doctor import SCRIPT_FAILED
from graphscope.doctor.ranks import divergence_findings, merged, rank_differences
from graphscope.doctor.report import format_finding
from graphscope.files import write_atomic
from graphscope.model import Finding, Run, compact_json
from graphscope.report.builder import REPORT_FILE
from graphscope.report.ranks import RankEntry, write_rank_index
from graphscope.store import SESSION_FILE, load, save

RANK_FILE = "rank.json"
LAUNCH_VARIABLE = "GRAPHSCOPE_LAUNCH"
RANKS_FOLDER_VARIABLE = "GRAPHSCOPE_RANKS_FOLDER"
WAIT_SECONDS = 300.0


@dataclass(frozen=True)
class Ranks:
    """This process's place in a torchrun launch: its rank, how many ranks there are (on this
    machine: `local_size`), which launch this is, and whether graphscope started torchrun."""

    rank: int
    size: int
    local_size: int
    launch: str
    launched_here: bool


def ranks_from(environ: Mapping[str, str] = os.environ) -> Ranks | None:
    """The rank this process is under torchrun (or a launcher that sets the same variables),
    None in a plain run."""
    if "RANK" not in environ or "WORLD_SIZE" not in environ:
        return None
    size = int(environ["WORLD_SIZE"])
    ours = environ.get(LAUNCH_VARIABLE)
    launch = ours or "/".join((environ.get("TORCHELASTIC_RUN_ID", f"parent-{os.getppid()}"),
                               environ.get("TORCHELASTIC_RESTART_COUNT", "0")))
    return Ranks(int(environ["RANK"]), size, int(environ.get("LOCAL_WORLD_SIZE", size)), launch, ours is not None)


def rank_folder(directory: Path, rank: int) -> Path:
    """`DIR/rank-K`: where rank K writes what a single-process run writes to DIR."""
    return directory / f"rank-{rank}"


def rank_file(path: Path, ranks: Ranks | None) -> Path:
    """`findings-rank-1.json` for `findings.json` under torchrun, where every rank writes its own."""
    return path if ranks is None else path.with_name(f"{path.stem}-rank-{ranks.rank}{path.suffix}")


def mark_complete(folder: Path, ranks: Ranks, status: int | None, steps: int) -> Path:
    """Say, last, that this rank's folder is complete, for which launch, and how its script ended."""
    record = {"launch": ranks.launch, "rank": ranks.rank, "size": ranks.size, "status": status, "steps": steps}
    return write_atomic(folder / RANK_FILE, (compact_json(record) + "\n").encode("utf-8"))


def completed(directory: Path, launch: str, size: int) -> dict[int, dict]:
    """The ranks among `range(size)` whose folder this launch completed, with what each recorded."""
    found = {}
    for rank in range(size):
        try:
            record = json.loads((rank_folder(directory, rank) / RANK_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if record.get("launch") == launch:
            found[rank] = record
    return found


def wait_for_ranks(directory: Path, ranks: Ranks, timeout: float = WAIT_SECONDS) -> dict[int, dict]:
    """Rank 0's wait for the other ranks of its machine to complete their folders, at most
    `timeout` seconds; returns those that did."""
    deadline = time.monotonic() + timeout
    while True:
        found = completed(directory, ranks.launch, ranks.local_size)
        if len(found) == ranks.local_size or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@contextlib.contextmanager
def finishing_writes(ranks: Ranks | None) -> Iterator[None]:
    """Let a rank finish writing when torchrun stops it (SIGTERM: another rank failed) and
    stop right after; torchrun kills it outright only 30 seconds later. Outside torchrun,
    nothing changes."""
    if ranks is None:
        yield
        return
    stopped: list[int] = []
    try:
        previous = signal.signal(signal.SIGTERM, lambda number, _: stopped.append(number))
    except ValueError:  # not the main thread: signals cannot be caught here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if stopped:
            sys.exit(128 + signal.SIGTERM)


def torchrun(nproc: int, arguments: Sequence[str], environ: Mapping[str, str] | None = None) -> tuple[int, str]:
    """Run `graphscope ARGUMENTS` on `nproc` ranks of this machine with torchrun; returns its
    exit status and the launch's id, which each rank records."""
    launch = uuid.uuid4().hex
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "graphscope", *arguments]
    done = subprocess.run(command, env={**os.environ, **(environ or {}), LAUNCH_VARIABLE: launch})
    return done.returncode, launch


def prefixed(text: str, ranks: Ranks | None) -> str:
    """Every line of `text` marked `[rank K]` under torchrun, where ranks print side by side."""
    if ranks is None:
        return text
    return "\n".join(f"[rank {ranks.rank}] {line}" if line else line for line in text.split("\n"))


def entries(directory: Path, size: int, found: Mapping[int, dict]) -> list[RankEntry]:
    """What the index says of each rank of the launch, completed or not."""
    listed = []
    for rank in range(size):
        folder = rank_folder(directory, rank)
        record = found.get(rank, {})
        listed.append(RankEntry(rank, folder.name, (folder / REPORT_FILE).is_file(), record.get("status"),
                                record.get("steps")))
    return listed


def rank_runs(directory: Path, found: Mapping[int, dict]) -> dict[int, Run]:
    """The run each completed rank saved (its session.json)."""
    return {rank: load(rank_folder(directory, rank) / SESSION_FILE) for rank in sorted(found)}


def write_index(directory: Path, size: int, launch: str, script: str | None) -> tuple[Path, list[Finding]]:
    """`DIR/index.html` for the ranks of `launch` found in DIR, and the findings across them."""
    found = completed(directory, launch, size)
    differences = rank_differences(rank_runs(directory, found))
    findings = divergence_findings(differences)
    return write_rank_index(directory, script, entries(directory, size, found), differences, findings), findings


def index_line(index: Path, size: int, launch: str, findings: Sequence[Finding]) -> str:
    """`graphscope: wrote DIR/index.html: 2 rank(s), ...`: what the index holds, then the
    findings across the ranks."""
    found = completed(index.parent, launch, size)
    missing = [str(rank) for rank in range(size) if rank not in found]
    lost = f"; rank(s) {', '.join(missing)} wrote nothing (they died, or were still running)" if missing else ""
    line = f"graphscope: wrote {index}: {size} rank(s), each in {index.parent}/rank-K/{lost}"
    return "\n\n".join([line, *map(format_finding, findings)])


def index_for(directory: Path, ranks: Ranks, script: str | None) -> str | None:
    """Rank 0 under a torchrun graphscope did not start: wait for the other ranks, write the
    index and say so; any other rank leaves it to rank 0, or to `--nproc`."""
    if ranks.rank != 0 or ranks.launched_here:
        return None
    wait_for_ranks(directory, ranks)
    index, findings = write_index(directory, ranks.local_size, ranks.launch, script)
    return index_line(index, ranks.local_size, ranks.launch, findings)


def render_on_ranks(nproc: int, arguments: Sequence[str], directory: Path, script: str) -> int:
    """`render --nproc N`: torchrun the render, then write the index of the ranks it left."""
    status, launch = torchrun(nproc, arguments)
    index, findings = write_index(directory, nproc, launch, script)
    print(index_line(index, nproc, launch, findings), file=sys.stderr)
    return status


def keep_for_launch(run: Run, ranks: Ranks) -> None:
    """A rank of `doctor --nproc`: save the run where the launching doctor reads it."""
    folder = rank_folder(Path(os.environ[RANKS_FOLDER_VARIABLE]), ranks.rank)
    save(run.snapshots, folder / SESSION_FILE, run.script, run.status, run.findings)
    mark_complete(folder, ranks, run.status, len(run.snapshots))


def doctor_on_ranks(nproc: int, arguments: Sequence[str]) -> list[Finding]:
    """`doctor --nproc N`: torchrun the doctor; every rank's findings, told once for the ranks
    that share them, those across ranks, and one for each rank that saved nothing."""
    with tempfile.TemporaryDirectory(prefix="graphscope-ranks-") as folder:
        _, launch = torchrun(nproc, arguments, {RANKS_FOLDER_VARIABLE: folder})
        found = completed(Path(folder), launch, nproc)
        runs = rank_runs(Path(folder), found)
    lost = [Finding(SCRIPT_FAILED, "error", f"rank {rank} saved no capture: it died, or torchrun stopped it "
                    "when another rank failed.", "see the rank's own output above.", explains_failure=True)
            for rank in range(nproc) if rank not in found]
    findings = merged({rank: run.findings for rank, run in runs.items()})
    return findings + divergence_findings(rank_differences(runs)) + lost
