"""Running work on a thread of its own with a bigger stack than the default: deep recursion in
C code (a layout engine on a deep graph, PyTorch freeing a deep graph) needs it."""

from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def on_thread_stack(stack_size: int, work: Callable[[], T]) -> T:
    """Run `work` on a new thread with a `stack_size`-byte stack (deep recursion in C code
    needs more than the default) and hand back its result or its exception."""
    outcome: dict[str, Any] = {}

    def body() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed back to the calling thread
            outcome["error"] = exc

    previous = threading.stack_size(stack_size)
    try:
        thread = threading.Thread(target=body)
        thread.start()
    finally:
        threading.stack_size(previous)
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]

