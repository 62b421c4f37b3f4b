"""Naming tensors as the user named them: frame variables, module paths, explicit `names=`.

A `NameTable` lives only for the duration of one capture: it maps tensors to names by
object identity (leaves) or by their autograd edge (non-leaves) and is dropped afterwards,
so no key derived from an address ever reaches the model.
"""

from __future__ import annotations

import functools
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

import torch

from graphscope.capture.frames import is_internal, scopes, user_frames

_MAX_CONTAINER_ITEMS = 1000
# The attribute a `torch.compile(module)` wrapper holds the module in: no part of a user's name.
ORIGINAL_MODULE = "_orig_mod"


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

    def name_of(self, tensor: torch.Tensor) -> str | None:
        """The user's name for a tensor, leaf or not."""
        if tensor.grad_fn is None:
            return self.leaf_name(tensor)
        entry = self.nonleaves.get((tensor.grad_fn, tensor.output_nr))
        return None if entry is None else entry[0]


def _public(items: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """Variables worth naming: strings that do not start with an underscore."""
    for key, value in items:
        if isinstance(key, str) and not key.startswith("_"):
            yield key, value


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
    objects += [(name, module) for name, module in modules if _user_class(type(module))]
    for name, value in objects:  # after every plain variable, whose names come first
        attributes = vars(value)
        if len(attributes) <= _MAX_CONTAINER_ITEMS:  # a module's own lists and tensors too (`policy.saved_log_probs`)
            _sort_variables(((f"{name}.{key}", item) for key, item in _public(attributes.items())),
                            modules if not isinstance(value, torch.nn.Module) else [], tensors, containers, [])
    for name, module in modules:
        add_module_names(table, module, prefix=name)
    for name, tensor in tensors:
        table.add(name, tensor)
    for name, value in containers:
        for item_name, item in _container_items(name, value):
            table.add(item_name, item)


def add_module_names(table: NameTable, module: torch.nn.Module, prefix: str = "") -> None:
    """Name a module's parameters by their dotted path (`model.linear.weight`, also when
    `model` is the wrapper `torch.compile` returned)."""
    for name, param in module.named_parameters(prefix=prefix, remove_duplicate=True):
        table.add(".".join(part for part in name.split(".") if part != ORIGINAL_MODULE), param)


def names_from_frames(frame: types.FrameType | None) -> NameTable:
    """Names visible from the user's frames around `frame`."""
    table = NameTable()
    add_scope_names(table, scopes(user_frames(frame)))
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


def module_name(module: torch.nn.Module, frame: types.FrameType | None) -> str | None:
    """How the user's variables name a module, as its parameters are named: by the first
    module variable (innermost scope first) that is it or holds it (`layers.0` of a ModuleList
    `layers`, also when the call was made through a loop variable `layer`)."""
    for scope in scopes(user_frames(frame)):
        for name, value in _public(scope.items()):
            if value is module:
                return name
            if isinstance(value, torch.nn.Module):
                path = path_inside(value, module)
                if path is not None:
                    return f"{name}.{path}"
    return None


def path_inside(outer: torch.nn.Module, module: torch.nn.Module) -> str | None:
    """The dotted path of `module` inside `outer` (the `_orig_mod` a compiled wrapper keeps its
    module in is no part of it); None when `outer` does not hold it."""
    for path, child in outer.named_modules():
        if child is module and path:
            return ".".join(part for part in path.split(".") if part != ORIGINAL_MODULE)
    return None
