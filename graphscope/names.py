"""Naming tensors as the user named them: frame variables, module paths, explicit `names=`.

A `NameTable` lives only for the duration of one capture: it maps tensors to names by
object identity (leaves) or by their autograd edge (non-leaves) and is dropped afterwards,
so no key derived from an address ever reaches the model.
"""

from __future__ import annotations

import functools
import inspect
import os
import runpy
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

import torch

GRAPHSCOPE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_INTERNAL_DIRS = (os.path.dirname(os.path.abspath(torch.__file__)) + os.sep, GRAPHSCOPE_DIR)
_INTERNAL_FILES = {os.path.abspath(runpy.__file__)}
_MAX_CONTAINER_ITEMS = 1000
_CACHED_LOCALS = sys.version_info < (3, 13)


@dataclass
class NameTable:
    """Tensor names for one capture; keys are transient and never stored in a snapshot."""

    leaves: dict[int, str] = field(default_factory=dict)
    nonleaves: dict[tuple[Any, int], tuple[str, torch.Tensor]] = field(default_factory=dict)

    def add(self, name: str, tensor: torch.Tensor) -> None:
        """Remember `name` for `tensor` unless the tensor already has a name."""
        if not tensor.requires_grad:
            return
        try:
            fn = tensor.grad_fn
        except RuntimeError:  # a view made under no_grad and changed in place: no graph can use it
            return
        if fn is None:
            self.leaves.setdefault(id(tensor), name)
        else:
            self.nonleaves.setdefault((fn, tensor.output_nr), (name, tensor))

    def leaf_name(self, tensor: torch.Tensor) -> str | None:
        """The name of a leaf tensor, if the user gave it one."""
        return self.leaves.get(id(tensor))


@functools.lru_cache(maxsize=4096)
def is_internal(filename: str) -> bool:
    """True for frames that belong to torch, graphscope, runpy or other frozen modules."""
    if filename.startswith("<frozen "):
        return True
    path = os.path.abspath(filename)
    return path.startswith(_INTERNAL_DIRS) or path in _INTERNAL_FILES


def user_frames(frame: types.FrameType | None) -> list[types.FrameType]:
    """The contiguous run of user frames, innermost first, skipping torch and graphscope."""
    while frame is not None and is_internal(frame.f_code.co_filename):
        frame = frame.f_back
    frames = []
    while frame is not None and not is_internal(frame.f_code.co_filename):
        frames.append(frame)
        frame = frame.f_back
    return frames


def _public(items: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """Variables worth naming: strings that do not start with an underscore."""
    for key, value in items:
        if isinstance(key, str) and not key.startswith("_"):
            yield key, value


def _is_private_cache(frame: types.FrameType, local: Any) -> bool:
    """True when `local` is only the cache CPython < 3.13 keeps of a function frame's
    variables: not a class body's or exec's real namespace (code that is not optimized),
    and not a `locals()` dict the user holds (then more than the frame, the caller's
    variable, this parameter and getrefcount's argument refer to it). Emptying such a cache
    changes nothing the program can see; the next `locals()` or debugger refills it."""
    return (_CACHED_LOCALS and type(local) is dict and bool(frame.f_code.co_flags & inspect.CO_OPTIMIZED)
            and sys.getrefcount(local) <= 4)


def _scopes(frames: list[types.FrameType]) -> list[Mapping[str, Any]]:
    """Copies of each function frame's locals, innermost first, then each module's globals.

    Before Python 3.13, reading `f_locals` of a function frame caches a dict on the frame
    that keeps every local alive (even after `del`) until the frame ends; emptying that
    cache right after copying it keeps the user's tensors free to be collected. From 3.13
    on, `f_locals` is a live view of the variables and must not be cleared.
    """
    scopes: list[Mapping[str, Any]] = []
    for frame in frames:
        local = frame.f_locals
        if local is frame.f_globals:
            continue
        scopes.append(dict(local))
        if _is_private_cache(frame, local):
            local.clear()
    seen_globals: set[int] = set()
    for frame in frames:
        if id(frame.f_globals) not in seen_globals:
            seen_globals.add(id(frame.f_globals))
            scopes.append(frame.f_globals)
    return scopes


def _container_items(name: str, value: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """Tensors inside a list, tuple, dict or optimizer, with an indexing name."""
    if isinstance(value, (list, tuple)) and len(value) <= _MAX_CONTAINER_ITEMS:
        for i, item in enumerate(value):
            if isinstance(item, torch.Tensor):
                yield f"{name}[{i}]", item
    elif isinstance(value, dict) and len(value) <= _MAX_CONTAINER_ITEMS:
        for key, item in value.items():
            if isinstance(key, (str, int)) and isinstance(item, torch.Tensor):
                yield f"{name}[{key!r}]", item
    elif isinstance(value, torch.optim.Optimizer):
        for g, group in enumerate(value.param_groups):
            for i, param in enumerate(group["params"]):
                yield f"{name}.param_groups[{g}]['params'][{i}]", param


_CONTAINERS = (list, tuple, dict, torch.optim.Optimizer)


def _sort_variables(items: Iterable[tuple[str, Any]], modules: list, tensors: list, containers: list,
                    objects: list) -> None:
    """Put each (name, value) in the list of its kind; objects of the user's own classes (a
    Trainer holding `self.model`) go to `objects`, to be looked into one level deep."""
    for name, value in items:
        if isinstance(value, torch.Tensor):
            tensors.append((name, value))
        elif isinstance(value, torch.nn.Module):
            modules.append((name, value))
        elif isinstance(value, _CONTAINERS):
            containers.append((name, value))
        elif _user_class(type(value)) and hasattr(value, "__dict__"):
            objects.append((name, value))


@functools.lru_cache(maxsize=256)
def _user_class(kind: type) -> bool:
    """Whether instances of `kind` are the user's own objects (its class is defined in the
    user's code, not torch's or a library's); decided once per class, since every variable
    in sight is asked about at every capture."""
    filename = getattr(sys.modules.get(kind.__module__), "__file__", None)
    return filename is not None and not is_internal(filename) and not issubclass(kind, type)


def add_scope_names(table: NameTable, scopes: Iterable[Mapping[str, Any]]) -> None:
    """Fill `table` from variable scopes: module paths, then plain tensors, then containers.

    Module paths come first because they are stable, where a loop variable (`for p in
    params`) would otherwise name whichever parameter it last held.
    """
    modules, tensors, containers, objects = [], [], [], []
    for scope in scopes:
        _sort_variables(_public(scope.items()), modules, tensors, containers, objects)
    for name, value in objects:  # after every plain variable, whose names come first
        attributes = vars(value)
        if len(attributes) <= _MAX_CONTAINER_ITEMS:
            _sort_variables(((f"{name}.{key}", item) for key, item in _public(attributes.items())),
                            modules, tensors, containers, [])
    for name, module in modules:
        add_module_names(table, module, prefix=name)
    for name, tensor in tensors:
        table.add(name, tensor)
    for name, value in containers:
        for item_name, item in _container_items(name, value):
            table.add(item_name, item)


def add_module_names(table: NameTable, module: torch.nn.Module, prefix: str = "") -> None:
    """Name a module's parameters by their dotted path (`model.linear.weight`)."""
    for name, param in module.named_parameters(prefix=prefix, remove_duplicate=True):
        table.add(name, param)


def names_from_frames(frame: types.FrameType | None) -> NameTable:
    """Names visible from the user's frames around `frame`."""
    table = NameTable()
    add_scope_names(table, _scopes(user_frames(frame)))
    return table


def names_from_argument(names: Mapping[str, Any] | torch.nn.Module) -> NameTable:
    """Names given explicitly as a dict (tensors, modules, containers) or a module."""
    table = NameTable()
    if isinstance(names, torch.nn.Module):
        add_module_names(table, names)
    elif isinstance(names, Mapping):
        add_scope_names(table, [names])
    else:
        raise TypeError(
            f"names= takes a dict of name -> tensor/module or an nn.Module, not {type(names).__name__}"
        )
    return table


def variable_name(obj: Any, frame: types.FrameType | None) -> str | None:
    """The name of the first user variable (innermost scope first) that holds `obj`."""
    for scope in _scopes(user_frames(frame)):
        for name, value in _public(scope.items()):
            if value is obj:
                return name
    return None
