"""Timing helpers and the two references graphscope is compared with: a minimal walker and torchviz."""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Union

import torch

Outcome = Union[float, str]  # median seconds, or why there is no time (an exception's name)


def minimal_walk(output: torch.Tensor) -> tuple[set[Any], list[tuple[Any, Any]]]:
    """Every autograd node behind `output` and every edge between them; an explicit-stack DFS."""
    seen = {output.grad_fn}
    stack = [output.grad_fn]
    edges = []
    while stack:
        fn = stack.pop()
        for child, _ in fn.next_functions:
            if child is not None:
                edges.append((child, fn))
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
    return seen, edges


def torchviz_source(output: torch.Tensor) -> str:
    """torchviz's DOT text for `output` (`make_dot(...).source`, its default options)."""
    from torchviz import make_dot

    return make_dot(output).source


def dot_node_count(source: str) -> int:
    """Distinct node ids declared in DOT text written by the `graphviz` package (torchviz)."""
    ids = set()
    for line in source.splitlines():
        statement = line.strip()
        if statement and " -> " not in statement and statement[0].isdigit():
            ids.add(statement.split(" ", 1)[0])
    return len(ids)


def timed(call: Callable[[Any], Any], graph: Any, number: int = 1) -> float:
    """Seconds per call of `call(graph)`, over `number` calls after a garbage collection.

    The last result is freed outside the timed region.
    """
    gc.collect()
    start = time.perf_counter()
    for _ in range(number):
        result = call(graph)
    elapsed = time.perf_counter() - start
    del result
    return elapsed / number


class OverLimit(Exception):
    """A call stopped at its time limit; its message ("> 120 s") stands in for the time."""


@dataclass(frozen=True)
class Timings:
    """Median seconds per call of each tool (or why there is none), and the rounds they came from."""

    medians: dict[str, Outcome]
    rounds: int

    def __getitem__(self, tool: str) -> Outcome:
        """The median (or reason) of one tool."""
        return self.medians[tool]


def interleaved(tools: dict[str, Callable[[Any], Any]], graph: Callable[[], Any], repeats: int,
                number: int = 1, budget: float = float("inf")) -> Timings:
    """Median seconds per call of each tool, taking turns for `repeats` rounds.

    `graph()` gives the graph for each sample (the same one again, or a fresh one), built
    before the clock starts. No new round starts once `budget` seconds have passed. A tool
    that raises is dropped and reported by the exception's name (RecursionError is the
    expected one: torchviz recurses once per level of depth), or by OverLimit's message.
    """
    samples: dict[str, list[float]] = {name: [] for name in tools}
    failed: dict[str, str] = {}
    start = time.perf_counter()
    rounds = 0
    while rounds < repeats and (rounds == 0 or time.perf_counter() - start < budget):
        for name, call in tools.items():
            if name in failed:
                continue
            try:
                samples[name].append(timed(call, graph(), number))
            except OverLimit as exc:
                failed[name] = str(exc)
            except Exception as exc:
                failed[name] = type(exc).__name__
        rounds += 1
    return Timings({name: failed.get(name) or statistics.median(samples[name]) for name in tools}, rounds)


def ratio(numerator: Outcome, denominator: Outcome) -> Outcome:
    """numerator / denominator, or the reason one of them has no time."""
    if isinstance(numerator, str):
        return numerator
    if isinstance(denominator, str):
        return denominator
    return numerator / denominator
