"""What the runner watches besides the autograd graphs: warnings, and what each optimizer step updates.

Warnings are recorded with the user's `file:line` and still shown as Python shows them.
PyTorch raises some warnings (reading `.grad` of a non-leaf) from whatever Python frame
called into torch, which under graphscope is its own TorchFunctionMode; those are issued
again at the user's line, so they are shown and filtered once per user line, as without
graphscope. Before every `optimizer.step()` the parameters without a `.grad` are noted.
"""

from __future__ import annotations

import contextlib
import sys
import types
import warnings
from dataclasses import replace
from typing import Any, Callable, Iterator

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from graphscope.capture.frames import (display_path, is_graphscope_file, outside_user_code, scopes, user_frame,
                                       user_frames)
from graphscope.model import IdleParameter, Warned

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


class Watch:
    """Collects the warnings and idle parameters of one run, with user `file:line` locations."""

    def __init__(self, root: str, current_step: Callable[[], int]):
        self.root = root
        self.current_step = current_step
        self.show_original = warnings.showwarning
        self.warned: dict[tuple[str, str, str | None], Warned] = {}
        self.idle: dict[str, IdleParameter] = {}
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

    def before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """Optimizer step pre-hook: note after which captured step it ran, and every parameter it
        is about to update without a .grad (unless a closure, run by the step, makes them)."""
        self.optimizer_steps.append(self.current_step())
        if not _has_closure(args, kwargs):
            self.check_gradients(optimizer)

    def after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """Optimizer step post-hook: a step given a closure has run it, so its parameters'
        gradients are the ones it used."""
        if _has_closure(args, kwargs):
            self.check_gradients(optimizer)

    def check_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Note every parameter of `optimizer` that has no .grad, where the user's step call is."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        idle = [p for p in params if p.grad is None]
        if not idle:
            return
        frame = user_frame(sys._getframe(2))
        names = parameter_names(frame)
        position = {id(p): i for i, p in enumerate(params)}
        step = self.current_step()
        for param in idle:
            name = names.get(id(param)) or f"parameter {position[id(param)]} of the optimizer"
            self.note_idle(IdleParameter(name, param.requires_grad,
                                         None if step < 0 else step, self.frame_location(frame),
                                         everything=len(idle) == len(params)))

    def note_idle(self, idle: IdleParameter) -> None:
        """Keep the first sighting of each idle parameter and count the others."""
        known = self.idle.get(idle.name)
        self.idle[idle.name] = idle if known is None else replace(known, times=known.times + 1)


def _has_closure(args: tuple, kwargs: dict) -> bool:
    """Whether an optimizer's step(closure) call (`args` starts with the optimizer, as step
    hooks get them) was given a closure."""
    closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
    return closure is not None


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
