"""Which autograd nodes a graph reaches, in the order graphscope numbers them: one pass
over `next_functions` with the list of nodes found as its queue."""

from __future__ import annotations

from typing import Any, NamedTuple


def visit_order(roots: list[Any], stop: str | None = None) -> tuple[dict[Any, int], list[Any], list, list[int]]:
    """Autograd nodes reachable from `roots`, numbered in the order a breadth-first walk first
    reaches them (the list of nodes found is the queue: no recursion, no stack to pop): their
    numbers, the nodes, every input read as (input's number, reader's number, output number),
    and the nodes not gone past. A node whose metadata holds `stop` is numbered, but the walk
    does not go past it."""
    index: dict[Any, int] = dict.fromkeys(roots)
    order = list(index)
    for i, root in enumerate(order):
        index[root] = i
    count = len(order)
    reads: list[tuple[int, int, int]] = []
    stopped: list[int] = []
    found, read = order.append, reads.append
    # Operators (`in`, subscripts) rather than method calls: this loop runs once per edge.
    for i, fn in enumerate(order):  # a list iterator sees what is appended while it runs
        if stop is not None and stop in fn.metadata:
            stopped.append(i)
            continue
        for child, nr in fn.next_functions:
            if child is not None:
                if child not in index:
                    index[child] = count
                    count += 1
                    found(child)
                read((index[child], i, nr))
    return index, order, reads, stopped


class Visit(NamedTuple):
    """What `visit_order` found from `roots`, stopping at `stop`: a walk from the same roots
    with the same stop takes it instead of visiting the graph again."""

    roots: list[Any]
    stop: str | None
    found: tuple[dict[Any, int], list[Any], list, list[int]]
