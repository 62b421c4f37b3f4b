"""Which frames are the user's: everything outside torch, graphscope, runpy and the warnings
machinery, and how a user's file is named in what graphscope writes (relative, never
machine-specific)."""

from __future__ import annotations

import functools
import inspect
import os
import runpy
import sys
import types
import warnings
from typing import Any, Mapping

import torch
import torch.overrides

GRAPHSCOPE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_INTERNAL_DIRS = (os.path.dirname(os.path.abspath(torch.__file__)) + os.sep, GRAPHSCOPE_DIR)
_INTERNAL_FILES = {os.path.abspath(runpy.__file__)}
_WARNINGS_FILE = os.path.abspath(warnings.__file__)
_RUNNER_FILES = (os.path.abspath(runpy.__file__), os.path.abspath(torch.overrides.__file__))
_CACHED_LOCALS = sys.version_info < (3, 13)


@functools.lru_cache(maxsize=4096)
def is_internal(filename: str) -> bool:
    """True for frames that belong to torch, graphscope, runpy or other frozen modules."""
    if filename.startswith("<frozen "):
        return True
    path = os.path.abspath(filename)
    return path.startswith(_INTERNAL_DIRS) or path in _INTERNAL_FILES


def outside_user_code(filename: str) -> bool:
    """Frames of torch, graphscope, runpy, and the warnings machinery."""
    return is_internal(filename) or os.path.abspath(filename) == _WARNINGS_FILE


def is_graphscope_file(filename: str) -> bool:
    """True for a file of graphscope itself."""
    return os.path.abspath(filename).startswith(GRAPHSCOPE_DIR)


def is_runner_frame(filename: str) -> bool:
    """Frames that `python script.py` would not have: graphscope's own, runpy's, and torch's
    dispatch to graphscope's torch-function mode (torch/overrides.py)."""
    if filename == "<frozen runpy>":
        return True
    return is_graphscope_file(filename) or os.path.abspath(filename) in _RUNNER_FILES


def user_frame(frame: types.FrameType | None) -> types.FrameType | None:
    """The innermost frame of the user's own code at or above `frame`."""
    while frame is not None and outside_user_code(frame.f_code.co_filename):
        frame = frame.f_back
    return frame


def user_frames(frame: types.FrameType | None) -> list[types.FrameType]:
    """The contiguous run of user frames, innermost first, skipping torch and graphscope."""
    while frame is not None and is_internal(frame.f_code.co_filename):
        frame = frame.f_back
    frames = []
    while frame is not None and not is_internal(frame.f_code.co_filename):
        frames.append(frame)
        frame = frame.f_back
    return frames


def _is_private_cache(frame: types.FrameType, local: Any) -> bool:
    """True when `local` is only the cache CPython < 3.13 keeps of a function frame's
    variables: not a class body's or exec's real namespace (code that is not optimized),
    and not a `locals()` dict the user holds (then more than the frame, the caller's
    variable, this parameter and getrefcount's argument refer to it). Emptying such a cache
    changes nothing the program can see; the next `locals()` or debugger refills it."""
    return (_CACHED_LOCALS and type(local) is dict and bool(frame.f_code.co_flags & inspect.CO_OPTIMIZED)
            and sys.getrefcount(local) <= 4)


def scopes(frames: list[types.FrameType]) -> list[Mapping[str, Any]]:
    """Copies of each function frame's locals, innermost first, then each module's globals.

    Before Python 3.13, reading `f_locals` of a function frame caches a dict on the frame
    that keeps every local alive (even after `del`) until the frame ends; emptying that
    cache right after copying it keeps the user's tensors free to be collected. From 3.13
    on, `f_locals` is a live view of the variables and must not be cleared.
    """
    found: list[Mapping[str, Any]] = []
    for frame in frames:
        local = frame.f_locals
        if local is frame.f_globals:
            continue
        found.append(dict(local))
        if _is_private_cache(frame, local):
            local.clear()
    seen_globals: set[int] = set()
    for frame in frames:
        if id(frame.f_globals) not in seen_globals:
            seen_globals.add(id(frame.f_globals))
            found.append(frame.f_globals)
    return found


@functools.lru_cache(maxsize=4096)
def display_path(filename: str, root: str) -> str:
    """`examples/train.py` when under `root`, else the file name alone (never machine-specific)."""
    path = os.path.abspath(filename)
    root = os.path.abspath(root)
    if path.startswith(root + os.sep):
        return os.path.relpath(path, root).replace(os.sep, "/")
    return os.path.basename(path)


def location(frame: types.FrameType, root: str) -> str:
    """`train.py:12`: where a frame is, relative to `root`."""
    return f"{display_path(frame.f_code.co_filename, root)}:{frame.f_lineno}"
