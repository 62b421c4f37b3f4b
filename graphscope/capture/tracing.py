"""When torch itself is tracing a program rather than running it: dynamo and AOT autograd
under `torch.compile`, `torch.export`, and the transforms of `torch.func`.

Graphscope stays out of every such trace. Its source-stamping mode steps aside, and an
autograd call torch makes while tracing (AOT autograd differentiates the joint graph with
`torch.autograd.grad` on fake tensors; `torch.func.grad` calls it on wrapped ones) passes
straight through: it is torch's own work, not a step of the user's script.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable

import torch

_TRACING_MODES = tuple(getattr(torch._C._TorchDispatchModeKey, name)
                       for name in ("FAKE", "PROXY", "FUNCTIONAL")
                       if hasattr(torch._C, "_TorchDispatchModeKey"))
# Read once: the stamping mode asks on every torch call. Dynamo knows this very function and
# reads it as True while it traces.
_IS_COMPILING = getattr(getattr(torch, "compiler", None), "is_compiling", None) or (lambda: False)
_TRACED_TENSOR_CLASSES = (("torch._subclasses.fake_tensor", "FakeTensor"),
                          ("torch._subclasses.functional_tensor", "FunctionalTensor"))


def compiling() -> bool:
    """True while dynamo traces or compiles a frame, or `torch.export` traces a program."""
    return _IS_COMPILING()


def _tracing_mode_active() -> bool:
    """True while one of the dispatch modes tracing installs (fake, proxy, functional) is on."""
    return any(torch._C._get_dispatch_mode(key) is not None for key in _TRACING_MODES)


def _traced_tensor(value: Any) -> bool:
    """True for a tensor that only exists inside a trace: fake, functional or functorch-wrapped."""
    if type(value) is torch.Tensor:  # no subclass: only a functorch wrapper can be one
        return torch._C._functorch.is_functorch_wrapped_tensor(value)
    if not isinstance(value, torch.Tensor):
        return False
    for module_name, class_name in _TRACED_TENSOR_CLASSES:
        kind = getattr(sys.modules.get(module_name), class_name, None)
        if kind is not None and isinstance(value, kind):
            return True
    return torch._C._functorch.is_functorch_wrapped_tensor(value)


def torch_is_tracing(tensors: Iterable[Any] = ()) -> bool:
    """True when an autograd call on `tensors` is made by torch while it traces a program
    (compiling, exporting, a `torch.func` transform): graphscope must let it pass."""
    return (compiling() or torch._C._are_functorch_transforms_active() or _tracing_mode_active()
            or any(map(_traced_tensor, tensors)))
