"""What `torch.compile` made of a script: which autograd nodes are compiled regions, what they
are called in the user's code, the backward graph AOT autograd built for each, and where dynamo
had to split the code (graph breaks).

A compiled module or function shows up in the autograd graph as one `CompiledFunctionBackward`
node whose class (`_forward_cls`) keeps what AOT autograd produced: the backward graph as an
fx GraphModule, before it is lowered (`_lazy_backward_info.bw_module`, or a function that
rebuilds it after a cache hit). A region is named by the path of the `torch.compile(module)`
wrapper whose call made it, else by the compiled function's name as dynamo's compilation
records have it, else by the module that owns the parameters it reads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import weakref
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import torch

from graphscope.capture.frames import display_path, is_internal
from graphscope.model import GraphBreak

COMPILED_OP = "CompiledFunctionBackward"
REGION_KEY = "graphscope.region"
_RESUME = re.compile(r"^torch_dynamo_resume_in_(.+)_at_\d+$")
_GRAPH_BREAK_LOG = "torch._dynamo.symbolic_convert.__graph_breaks"
_BREAK_AT = re.compile(r"in user code at (?P<file>.+?):(?P<line>\d+)")
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)')
_BREAK_WHY = (re.compile(r"Explanation: (.+)"), re.compile(r"Graph Break Reason: (.+)"))
_NEXT_SEQUENCE_NR = getattr(torch._C._autograd, "_get_sequence_nr", lambda: 0)


class Region(NamedTuple):
    """A compiled region as the model stores it: its name, the number of ops in its backward
    graph and that graph as node-link data (None where AOT autograd kept no graph)."""

    name: str | None
    inner_ops: int | None
    inner: dict[str, Any] | None


_read: weakref.WeakKeyDictionary[type, Region] = weakref.WeakKeyDictionary()


def is_compiled_node(fn: Any) -> bool:
    """True for the autograd node of a region compiled by AOT autograd."""
    return type(fn).__name__ == COMPILED_OP and hasattr(getattr(fn, "_forward_cls", None), "compiled_bw")


def is_compiled_module(module: torch.nn.Module) -> bool:
    """True for the wrapper `torch.compile(module)` returns."""
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    kind = getattr(eval_frame, "OptimizedModule", None)
    return kind is not None and isinstance(module, kind)


def sequence_mark() -> int:
    """The sequence number the next autograd node made in this thread will have."""
    return _NEXT_SEQUENCE_NR()


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """The tensors in a module's output: itself, or inside tuples, lists and dicts."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            yield item
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())


def mark_regions(output: Any, region: str, since: int) -> list[Any]:
    """Stamp `region` on the compiled nodes a compiled module call made (those numbered from
    `since` on, behind its output) that no inner call named first; returns them."""
    stack = [t.grad_fn for t in _tensors(output) if t.grad_fn is not None]
    seen, marked = set(), []
    while stack:
        fn = stack.pop()
        if fn in seen or hasattr(fn, "variable") or fn._sequence_nr() < since:
            continue
        seen.add(fn)
        if is_compiled_node(fn) and REGION_KEY not in fn.metadata:
            fn.metadata[REGION_KEY] = region
            marked.append(fn)
        stack.extend(child for child, _ in fn.next_functions if child is not None)
    return marked


def _function_name(forward_cls: Any) -> str | None:
    """The compiled function's name where dynamo compiled the user's own code (`train_step`;
    the part after a graph break is named as its function), else None."""
    compile_id = getattr(getattr(forward_cls, "metadata", None), "compile_id_str", None)
    utils = sys.modules.get("torch._dynamo.utils")
    records = getattr(utils, "get_compilation_metrics", lambda: [])()
    for record in records:
        if record.compile_id == compile_id and record.co_name and record.co_filename:
            if is_internal(record.co_filename):
                return None
            resumed = _RESUME.match(record.co_name)
            return resumed.group(1) if resumed else record.co_name
    return None


@contextlib.contextmanager
def _subclasses_only() -> Iterator[None]:
    """Torch-function handling on for tensor subclasses (fx's Proxy: rebuilding a graph traces
    it) and off for every mode, the user's and graphscope's: none of them sees the rebuild."""
    modes = [torch._C._pop_torch_function_stack() for _ in range(torch._C._len_torch_function_stack())]
    try:
        with torch._C._EnableTorchFunction():
            yield
    finally:
        for mode in reversed(modes):
            torch._C._push_on_torch_function_stack(mode)


def _backward_module(forward_cls: Any) -> Any:
    """The fx GraphModule of the region's backward (rebuilt from the compile cache when the
    region came from there), None where AOT autograd kept none."""
    lazy = getattr(forward_cls, "_lazy_backward_info", None)
    module = getattr(lazy, "bw_module", None)
    rebuild = getattr(lazy, "bw_module_fn", None)
    if module is None and rebuild is not None:
        try:
            with _subclasses_only():
                module = rebuild()
        except Exception:  # a cache entry that no longer loads: the graph is unknown, not wrong
            return None
    return module if hasattr(module, "graph") else None


def _op_name(node: Any) -> str:
    """`mm`, `threshold_backward`: an aten op's name without namespace and overload."""
    target = node.target
    name = getattr(target, "_opname", None) or getattr(target, "__name__", None) or str(target)
    return str(name)


_NOT_OPS = {"placeholder": "input", "get_attr": "constant", "output": "output"}


def inner_graph(module: Any) -> tuple[int, dict[str, Any]]:
    """The number of ops in a backward GraphModule and the graph as node-link data: its
    inputs, constants, ops and output, in the graph's order, and an edge for each value an
    op reads."""
    nodes, edges, ops = [], [], 0
    for node in module.graph.nodes:
        kind = _NOT_OPS.get(node.op, "op")
        node_id = "output" if kind == "output" else node.name
        ops += kind == "op"
        nodes.append({"id": node_id, "kind": kind, "op": _op_name(node) if kind == "op" else None})
        for source in dict.fromkeys(arg.name for arg in node.all_input_nodes):
            edges.append({"source": source, "target": node_id})
    return ops, {"directed": True, "edges": edges, "graph": {}, "multigraph": False, "nodes": nodes}


def _read_region(forward_cls: Any) -> Region:
    """A compiled region's function name and backward graph, as AOT autograd left them."""
    module = _backward_module(forward_cls)
    inner_ops, inner = (None, None) if module is None else inner_graph(module)
    return Region(_function_name(forward_cls), inner_ops, inner)


def _owner(names: Sequence[str | None]) -> str | None:
    """`net` for `net.fc1.weight` and `net.fc2.bias`: the module path the parameters share."""
    paths = [name.split(".")[:-1] for name in names if name]
    if not paths or len(paths) < len(names):
        return None
    return ".".join(os.path.commonprefix(paths)) or None


def region_of(fn: Any, leaf_name: Callable[[torch.Tensor], str | None]) -> Region:
    """What the model records of a compiled node (its class read once, when first met, while
    dynamo's records of the compile are fresh), named by the first of: the compiled module
    call's path stamped on it, the compiled function's name, the module that owns all the
    parameters it reads (a module compiled in place compiles its `forward`)."""
    forward_cls = fn._forward_cls
    region = _read.get(forward_cls)
    if region is None:
        region = _read[forward_cls] = _read_region(forward_cls)
    function = None if region.name == "forward" else region.name
    leaves = [leaf_name(child.variable) for child, _ in fn.next_functions if hasattr(child, "variable")]
    return region._replace(name=fn.metadata.get(REGION_KEY) or function or _owner(leaves) or region.name)


class _GraphBreaks(logging.Handler):
    """Hears dynamo's graph-break log: each break's user `file:line` and why, once per place."""

    def __init__(self, root: str):
        super().__init__(logging.DEBUG)
        self.root = root
        self.found: dict[tuple[str, str], GraphBreak] = {}

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the break a log record tells of."""
        text = record.getMessage()
        where = _BREAK_AT.search(text)
        if where is None:
            return
        if is_internal(where.group("file")):  # dynamo traced into graphscope's own mode: the user's call is outer
            users = [frame for frame in _FRAME.finditer(text) if not is_internal(frame.group("file"))]
            if not users:
                return
            where = users[-1]
        found = [why.search(text) for why in _BREAK_WHY]
        reason = next((match.group(1).strip() for match in found if match), "")
        location = f"{display_path(where.group('file'), self.root)}:{where.group('line')}"
        self.found.setdefault((location, reason), GraphBreak(location, reason))


@contextlib.contextmanager
def watching_graph_breaks(root: str) -> Iterator[_GraphBreaks]:
    """Collect the graph breaks dynamo reports inside the block. Its graph-break log is turned
    on for graphscope alone (not passed on to torch's own handlers, so nothing more is
    printed) unless the user turned it on (`TORCH_LOGS=graph_breaks`); then it is left as is."""
    log = logging.getLogger(_GRAPH_BREAK_LOG)
    handler = _GraphBreaks(root)
    level, propagate = log.level, log.propagate
    quiet = not log.isEnabledFor(logging.DEBUG)
    if quiet:
        log.setLevel(logging.DEBUG)
        log.propagate = False
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        if quiet:
            log.setLevel(level)
            log.propagate = propagate
