"""Keep deep autograd graphs from crashing the process when they are freed.

Once Python has touched the nodes of a very deep graph, PyTorch frees that graph
recursively on the C stack; on the default 8 MiB stack a chain of ~50,000 ops crashes the
interpreter (SIGSEGV). On Linux the main thread's stack grows on demand up to the soft
RLIMIT_STACK, so raising that limit before the graph is freed prevents the crash.
"""

from __future__ import annotations

import threading
import warnings

DEEP_GRAPH_NODES = 20_000

try:
    import resource
except ImportError:  # pragma: no cover - not on Linux/macOS
    resource = None  # type: ignore[assignment]


def raise_stack_limit() -> bool:
    """Raise the soft stack limit to the hard limit; True when the stack is now unlimited or raised."""
    if resource is None:
        return False
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    if soft == resource.RLIM_INFINITY or soft == hard:
        return soft == resource.RLIM_INFINITY
    resource.setrlimit(resource.RLIMIT_STACK, (hard, hard))
    return True


def guard_stamped_graphs() -> None:
    """Before stamping starts: every op it stamps is touched from Python, so any deep graph
    built while it is on, captured or not, must be freed on a stack that can grow."""
    if threading.current_thread() is threading.main_thread():
        raise_stack_limit()


def guard_deep_graph(node_count: int) -> None:
    """Before handing a deep graph back to the user, make sure freeing it cannot crash."""
    if node_count < DEEP_GRAPH_NODES:
        return
    if threading.current_thread() is threading.main_thread() and raise_stack_limit():
        return
    warnings.warn(
        f"graphscope walked a graph of {node_count:,} autograd nodes; PyTorch frees such deep "
        "graphs recursively and may crash on a small stack. Run with `ulimit -s unlimited` "
        "or in a thread started after threading.stack_size(1 << 30).",
        RuntimeWarning,
        stacklevel=3,
    )
