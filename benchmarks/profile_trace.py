"""Where graphscope spends its time, by cProfile: `python -m benchmarks.profile_trace GRAPH`.

GRAPH is `chain` (1,000,000 ops, traced once) or `transformer` (24 layers, traced 50
times), warm (after one minimal walk, as in the walk table), or `record` (300 steps of
the wrong-update loop under `graphscope.record()`). Prints the functions by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import warnings
from typing import Callable

import torch

import graphscope
from benchmarks import graphs
from benchmarks.measure import minimal_walk
from benchmarks.run import on_big_stack


def trace_chain() -> cProfile.Profile:
    """Profile of one warm trace of the 1,000,000-op chain."""
    return profile_trace(graphs.chain(1_000_000), 1)


def trace_transformer() -> cProfile.Profile:
    """Profile of 50 warm traces of the 24-layer TransformerEncoder."""
    return profile_trace(graphs.transformer(24), 50)


def profile_trace(output: torch.Tensor, times: int) -> cProfile.Profile:
    """Walk once unprofiled (creates the node wrappers), then profile `graphscope.trace` `times` times."""
    minimal_walk(output)
    profiler = cProfile.Profile()
    for _ in range(times):
        profiler.runcall(graphscope.trace, output)
    return profiler


def record_loop() -> cProfile.Profile:
    """Profile of 300 wrong-update steps, each captured by `graphscope.record()`."""
    profiler = cProfile.Profile()
    with graphscope.record():
        profiler.runcall(graphs.wrong_update, 300)
    return profiler


PROFILES: dict[str, Callable[[], cProfile.Profile]] = {
    "chain": trace_chain, "transformer": trace_transformer, "record": record_loop,
}


def main(argv: list[str] | None = None) -> None:
    """Profile the chosen graph and print the top functions by own time."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_trace", description=__doc__.splitlines()[0])
    parser.add_argument("graph", choices=sorted(PROFILES))
    parser.add_argument("--top", type=int, default=20, help="how many functions to print")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="graphscope walked a graph")
    profiler = on_big_stack(PROFILES[args.graph])
    pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
