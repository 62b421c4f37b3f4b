"""What the runner watches besides the autograd graphs: warnings, and what each optimizer step updates.

Warnings are recorded with the user's `file:line` and still shown as Python shows them.
PyTorch raises some warnings (reading `.grad` of a non-leaf) from whatever Python frame
called into torch, which under graphscope is its own TorchFunctionMode; those are issued
again at the user's line, so they are shown and filtered once per user line, as without
graphscope. Before every `optimizer.step()` the parameters without a `.grad` are noted.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import types
import warnings
from dataclasses import replace
from typing import Any, Callable, Iterator

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from graphscope.capture.frames import (display_path, is_graphscope_file, outside_user_code, scopes, user_frame,
                                       user_frames)
from graphscope.model import IdleParameter, OptimizerRecord, Warned

GRAPHSCOPE_MODULES = r"graphscope(\.|$)"


def parameter_names(frame: types.FrameType | None) -> dict[int, str]:
    """id -> name of every module parameter and tensor the user's frames can see, frozen ones too."""
    found: dict[int, str] = {}
    visible = scopes(user_frames(frame))
    for scope in visible:
        for name, value in scope.items():
            if isinstance(value, torch.nn.Module) and not name.startswith("_"):
                for path, param in value.named_parameters(prefix=name):
                    found.setdefault(id(param), path)
    for scope in visible:
        for name, value in scope.items():
            if isinstance(value, torch.Tensor) and not name.startswith("_"):
                found.setdefault(id(value), name)
    return found


class _OptimizerLog:
    """What one optimizer did: its name, its parameters' names, after which captured step each
    of its steps ran, and for each parameter the steps it had no gradient in (with where and
    how the first of them was seen)."""

    def __init__(self, name: str, names: dict[int, str], params: list[torch.Tensor]):
        self.name = name
        self.names = [names.get(id(p)) or f"parameter {i} of the optimizer" for i, p in enumerate(params)]
        self.steps: list[int] = []
        self.idle: dict[str, list[int]] = {}
        self.first: dict[str, IdleParameter] = {}

    def note(self, step: int, params: list[torch.Tensor], location: str | None) -> None:
        """One step: which parameters had no gradient."""
        self.steps.append(step)
        idle = [i for i, p in enumerate(params) if p.grad is None]
        for i in idle:
            name = self.names[i] if i < len(self.names) else f"parameter {i} of the optimizer"
            self.idle.setdefault(name, []).append(step)
            if name not in self.first:
                self.first[name] = IdleParameter(name, params[i].requires_grad, None if step < 0 else step, location,
                                                 everything=len(idle) == len(params))

    def idle_parameters(self) -> list[IdleParameter]:
        """Each parameter that had no gradient at some step: how often, and for how long at the end."""
        found = []
        for name, steps in self.idle.items():
            trailing = _trailing(self.steps, steps)
            since = steps[-trailing] if trailing else None
            found.append(replace(self.first[name], times=len(steps), total=len(self.steps), trailing=trailing,
                                 since=None if since is None or since < 0 else since))
        return found

    def record(self) -> OptimizerRecord:
        """The torch-free record of this optimizer."""
        return OptimizerRecord(self.name, tuple(self.names), tuple(self.steps))


def _trailing(steps: list[int], idle: list[int]) -> int:
    """How many of the last steps, in a row, are idle ones (both lists in step order; a step
    number may repeat when an optimizer steps twice between two backward calls)."""
    count = 0
    while count < len(idle) and count < len(steps) and idle[-1 - count] == steps[-1 - count]:
        count += 1
    return count


class Watch:
    """Collects the warnings and the optimizer steps of one run, with user `file:line` locations."""

    def __init__(self, root: str, current_step: Callable[[], int]):
        self.root = root
        self.current_step = current_step
        self.show_original = warnings.showwarning
        self.warned: dict[tuple[str, str, str | None], Warned] = {}
        self.optimizers: dict[int, _OptimizerLog] = {}
        self.optimizer_steps: list[int] = []

    def location(self, filename: str, line: int) -> str:
        """`file.py:LINE` relative to the script's folder."""
        return f"{display_path(filename, self.root)}:{line}"

    def frame_location(self, frame: types.FrameType | None) -> str | None:
        """The location of a frame, None when there is none."""
        return None if frame is None else self.location(frame.f_code.co_filename, frame.f_lineno)

    def show(self, message: Any, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        """Stand-in for warnings.showwarning: record, then show as Python would."""
        if is_graphscope_file(filename):
            frame = user_frame(sys._getframe(1))
            if frame is not None:
                self.reissue(message, category, frame)
                return
        text, where = str(message), self.warning_location(filename, lineno)
        self.warned.setdefault((category.__name__, text, where), Warned(category.__name__, text, where))
        self.show_original(message, category, filename, lineno, file, line)

    def warning_location(self, filename: str, lineno: int) -> str | None:
        """Where a warning points in the user's code: its own line, else the innermost user frame."""
        if not outside_user_code(filename):
            return self.location(filename, lineno)
        return self.frame_location(user_frame(sys._getframe(2)))

    def reissue(self, message: Any, category: type[Warning], frame: types.FrameType) -> None:
        """Warn again from the user's frame, through the user's filters and registry."""
        scope = frame.f_globals
        warnings.warn_explicit(message, category, frame.f_code.co_filename, frame.f_lineno,
                               module=scope.get("__name__", "__main__"),
                               registry=scope.setdefault("__warningregistry__", {}), module_globals=scope)

    def before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> tuple[tuple, dict] | None:
        """Optimizer step pre-hook: note after which captured step it ran, and which parameters
        it is about to update without a .grad (unless a closure, run by the step, makes them);
        a closure is handed to the step watched (see `watched_closure`)."""
        self.optimizer_steps.append(self.current_step())
        closure = _closure(args, kwargs)
        if closure is None:
            self.check_gradients(optimizer)
            return None
        watched = self.watched_closure(optimizer, closure)
        if "closure" in kwargs:
            return args, {**kwargs, "closure": watched}
        return (args[0], watched, *args[2:]), kwargs

    def watched_closure(self, optimizer: torch.optim.Optimizer, closure: Callable[[], Any]) -> Callable[[], Any]:
        """`closure` as the step runs it, noting an update wherever the step changed its
        parameters in place between two calls (LBFGS does, between the evaluations of one step):
        the backward calls on either side of it are then separate steps of the training."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        versions: list[int] = []

        @functools.wraps(closure)
        def watched(*args: Any, **kwargs: Any) -> Any:
            if versions and versions != [p._version for p in params]:
                self.optimizer_steps.append(self.current_step())
            result = closure(*args, **kwargs)
            versions[:] = [p._version for p in params]
            return result

        return watched

    def after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """Optimizer step post-hook: a step given a closure has run it, so its parameters'
        gradients are the ones it used."""
        if _closure(args, kwargs) is not None:
            self.check_gradients(optimizer)

    def check_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Note this step of `optimizer` and its parameters without a .grad, where the user's
        step call is; the optimizer's name and its parameters' are read once."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        log = self.optimizers.get(id(optimizer))
        known = log is not None and len(log.names) == len(params)
        idle = any(p.grad is None for p in params)
        frame = user_frame(sys._getframe(2)) if idle or not known else None  # a walk up the stack: when needed
        if not known:
            self.meet_optimizers(frame, optimizer)
            log = self.optimizers[id(optimizer)]
        log.note(self.current_step(), params, self.frame_location(frame) if idle else None)

    def meet_optimizers(self, frame: types.FrameType | None, stepping: torch.optim.Optimizer) -> None:
        """Learn the names of `stepping` and of every other optimizer in sight, and of the
        parameters each updates (once: optimizers that have not stepped yet are known too)."""
        variables = _variables(frame)
        found = {id(v): (n, v) for n, v in reversed(variables) if isinstance(v, torch.optim.Optimizer)}
        found.setdefault(id(stepping), (type(stepping).__name__, stepping))
        visible = parameter_names(frame)
        for key, (name, optimizer) in found.items():
            params = [p for group in optimizer.param_groups for p in group["params"]]
            known = self.optimizers.get(key)
            if known is None or len(known.names) != len(params):
                self.optimizers[key] = _OptimizerLog(name, visible, params)

    def idle_parameters(self) -> tuple[IdleParameter, ...]:
        """Every parameter some optimizer stepped without a gradient."""
        return tuple(idle for log in self.optimizers.values() for idle in log.idle_parameters())

    def optimizer_records(self) -> tuple[OptimizerRecord, ...]:
        """Each optimizer of the run, in the order it first stepped."""
        return tuple(log.record() for log in self.optimizers.values())


def _variables(frame: types.FrameType | None) -> list[tuple[str, Any]]:
    """The user's public variables in sight of `frame`, innermost scope first."""
    return [(name, value) for scope in scopes(user_frames(frame)) for name, value in scope.items()
            if isinstance(name, str) and not name.startswith("_")]


def _closure(args: tuple, kwargs: dict) -> Callable[..., Any] | None:
    """The closure an optimizer's step(closure) call (`args` starts with the optimizer, as step
    hooks get them) was given: something to call (a custom step may take a number), else None."""
    closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
    return closure if callable(closure) else None


@contextlib.contextmanager
def watching(root: str, current_step: Callable[[], int]) -> Iterator[Watch]:
    """Watch warnings and optimizer steps for the duration of the block."""
    with warnings.catch_warnings():
        warnings.filterwarnings("always", module=GRAPHSCOPE_MODULES)
        watch = Watch(root, current_step)
        warnings.showwarning = watch.show
        handles = [register_optimizer_step_pre_hook(watch.before_step),
                   register_optimizer_step_post_hook(watch.after_step)]
        try:
            yield watch
        finally:
            for handle in handles:
                handle.remove()
