"""Where each op came from: stamps every new autograd node with the user's `file:line`.

A TorchFunctionMode sees every torch call and its result while it is active; for each
output with a fresh `grad_fn` it writes the innermost user frame's location into the
node's `metadata` dict, which lives on the C++ node and needs no reference from us.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator

import torch
from torch.overrides import TorchFunctionMode

from graphscope.names import is_internal

SOURCE_KEY = "graphscope.source"


def display_path(filename: str, root: str) -> str:
    """`examples/train.py` when under `root`, else the file name alone (never machine-specific)."""
    path = os.path.abspath(filename)
    root = os.path.abspath(root)
    if path.startswith(root + os.sep):
        return os.path.relpath(path, root).replace(os.sep, "/")
    return os.path.basename(path)


class _SourceMode(TorchFunctionMode):
    """Stamps the grad_fn of every tensor a torch call returns with the caller's location."""

    def __init__(self, root: str):
        super().__init__()
        self.root = root
        self.paths: dict[str, str] = {}

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        result = func(*args, **(kwargs or {}))
        self._stamp(result)
        return result

    def _stamp(self, result: Any) -> None:
        """Write the user's `file:line` into each new grad_fn of `result`."""
        outputs = result if isinstance(result, (tuple, list)) else (result,)
        location = None
        for out in outputs:
            fn = getattr(out, "grad_fn", None) if isinstance(out, torch.Tensor) else None
            if fn is None:
                continue
            metadata = fn.metadata
            if SOURCE_KEY in metadata:
                continue
            if location is None:
                location = self._caller()
                if location is None:
                    return
            metadata[SOURCE_KEY] = location

    def _caller(self) -> str | None:
        """`file:line` of the innermost frame outside torch and graphscope."""
        frame = sys._getframe(2)
        while frame is not None and is_internal(frame.f_code.co_filename):
            frame = frame.f_back
        if frame is None:
            return None
        filename = frame.f_code.co_filename
        path = self.paths.get(filename)
        if path is None:
            path = self.paths[filename] = display_path(filename, self.root)
        return f"{path}:{frame.f_lineno}"


@contextlib.contextmanager
def track_sources(root: str | None = None) -> Iterator[None]:
    """Stamp the creation site of every autograd node made inside the block."""
    with _SourceMode(root or os.getcwd()):
        yield


def source_of(fn: Any) -> str | None:
    """The stamped `file:line` of an autograd node, if it was made while tracking."""
    return fn.metadata.get(SOURCE_KEY)
