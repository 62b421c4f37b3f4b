"""What DistributedDataParallel knows that its errors leave out: which parameter each of its
indices stands for.

DDP reports parameters that got no gradient by their index in its own list ("Parameter indices
which did not receive grad for rank 0: 4 5"). That list is the wrapped module's parameters that
require grad, module by module (`named_modules`, then each module's own parameters), leaving out
the ones DDP was told to ignore and any met a second time: the order DDP builds its reducer in.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

import torch

_DDP_MODULE = "torch.nn.parallel.distributed"


def averaged_across_ranks() -> bool:
    """True while a process group of more than one rank is up: DDP then replaces each
    parameter's `.grad` by the average over the ranks during the backward, so what this rank's
    backward sent a leaf is not what its `.grad` holds, and no sum of steps explains `.grad`."""
    distributed = torch.distributed
    return distributed.is_available() and distributed.is_initialized() and distributed.get_world_size() > 1


def _is_ddp(value: Any) -> bool:
    """True for a DistributedDataParallel module."""
    kind = getattr(sys.modules.get(_DDP_MODULE), "DistributedDataParallel", None)
    return kind is not None and isinstance(value, kind)


def reducer_names(ddp: torch.nn.Module) -> tuple[str, ...]:
    """The names (`module.aux.weight`, as DDP's own `named_parameters` gives them) of the
    parameters DDP reduces, in the order of its indices."""
    ignored = getattr(ddp, "parameters_to_ignore", set())
    names, seen = [], set()
    for module_name, module in ddp.module.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if param.requires_grad and f"{module_name}.{param_name}" not in ignored and param not in seen:
                seen.add(param)
                names.append(f"module.{module_name}.{param_name}" if module_name else f"module.{param_name}")
    return tuple(names)


def ddp_parameters(traceback: TracebackType | None) -> tuple[str, ...]:
    """The parameter names of the DDP module an exception was raised inside, by DDP's index;
    empty when it came from no DDP module."""
    while traceback is not None:
        owner = traceback.tb_frame.f_locals.get("self")
        if _is_ddp(owner):
            return reducer_names(owner)
        traceback = traceback.tb_next
    return ()
