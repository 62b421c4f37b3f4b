"""Where each op came from: stamps every new autograd node with the user's `file:line`
and the `nn.Module` call that made it.

A TorchFunctionMode sees every torch call and its result while it is active; for each
output with a fresh `grad_fn` it writes the innermost user frame's location, and the path
of the innermost module being called (`model.encoder.layers.3.linear1`), into the node's
`metadata` dict, which lives on the C++ node and needs no reference from us. Global module
hooks keep the stack of module calls.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
import weakref
from typing import Any, Callable, Iterator, NamedTuple

import torch
from torch.nn.modules import module as nn_module
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.overrides import TorchFunctionMode

from graphscope.capture.compiled import is_compiled_module, mark_regions, sequence_mark
from graphscope.capture.frames import display_path, is_internal
from graphscope.capture.identity import StampKeys
from graphscope.capture.names import module_name, path_inside
from graphscope.capture.tracing import compiling

SOURCE_KEY = "graphscope.source"
MODULE_KEY = "graphscope.module"
_HOOK_WARNING = r"Using `torch\.compile\(module\)` when there are global hooks on modules"


class ModuleStack:
    """The nn.Module calls in progress, each named by its dotted path from a user variable and
    numbered in the order the calls started; where each outermost call was made (`sites`).

    While dynamo traces a module call, its hooks do nothing: the trace must not see them. The
    call of a `torch.compile(module)` wrapper names the compiled regions it made after the
    wrapper's path, at the user's line that called it."""

    def __init__(self, root: str, calls_key: str):
        self.root = root
        self.calls_key = calls_key
        self.stack: list[tuple[torch.nn.Module, str, dict[str, Any], int | None]] = []
        self.paths: weakref.WeakKeyDictionary[torch.nn.Module, str] = weakref.WeakKeyDictionary()
        self.count = 0
        self.sites: dict[int, str] = {}

    def path_of(self, module: torch.nn.Module) -> str:
        """`model.layers.3`: the parent's path plus the child's attribute name, cached."""
        path = self.paths.get(module)
        if path is None:
            path = self._child_path(module) if self.stack else self._root_path(module)
            self.paths[module] = path
        return path

    def _child_path(self, module: torch.nn.Module) -> str:
        """Path of a submodule called while an ancestor runs (`layers.0` inside a ModuleList)."""
        parent, parent_path, _, _ = self.stack[-1]
        path = path_inside(parent, module)
        return f"{parent_path}.{path if path is not None else type(module).__name__}"

    def _root_path(self, module: torch.nn.Module) -> str:
        """A top-level module is named by the user's variables, as its parameters are, else by
        its class."""
        return module_name(module, sys._getframe()) or type(module).__name__

    def enter(self, module: torch.nn.Module, *_: Any) -> None:
        """Forward pre-hook: a module call starts; the ops it makes get its path and the
        numbers of the calls around them, as (path depth, call number) from the outermost."""
        if compiling():
            return
        path = self.path_of(module)
        number, self.count = self.count, self.count + 1
        outer = self.stack[-1][2][self.calls_key] if self.stack else ()
        if not self.stack:
            self.sites[number] = caller_location(sys._getframe(1), self.root) or "?"
        stamp = {MODULE_KEY: path, self.calls_key: (*outer, (path.count(".") + 1, number))}
        self.stack.append((module, path, stamp, sequence_mark() if is_compiled_module(module) else None))

    def leave(self, module: torch.nn.Module, _: Any, output: Any = None) -> None:
        """Forward hook: the module call ended (also when it raised)."""
        if compiling() or not self.stack:
            return
        _, path, _, mark = self.stack.pop()
        if mark is not None:
            self._name_regions(output, path, mark)

    def _name_regions(self, output: Any, path: str, mark: int) -> None:
        """Name the regions a compiled module call made after it, stamped with the caller's line."""
        location = caller_location(sys._getframe(2), self.root)
        for fn in mark_regions(output, path, mark):
            if SOURCE_KEY not in fn.metadata and location is not None:
                fn.metadata.update({SOURCE_KEY: location, MODULE_KEY: path})

    @property
    def current(self) -> dict[str, Any] | None:
        """What the innermost module call in progress stamps on its ops."""
        return self.stack[-1][2] if self.stack else None


def caller_location(frame: Any, root: str) -> str | None:
    """`file:line` of the innermost frame at or above `frame` outside torch and graphscope."""
    while frame is not None and is_internal(frame.f_code.co_filename):
        frame = frame.f_back
    if frame is None:
        return None
    return _location(frame.f_code.co_filename, frame.f_lineno, root)


@functools.lru_cache(maxsize=1 << 14)
def _location(filename: str, line: int, root: str) -> str:
    """`file:line`, one string per line: ops stamped at one line share their stamp."""
    return f"{display_path(filename, root)}:{line}"


def _readable_grad_fn(value: Any) -> Any:
    """`value.grad_fn` of a tensor, or None when it has none or PyTorch refuses to give it."""
    if not isinstance(value, torch.Tensor):
        return None
    try:
        return value.grad_fn
    except RuntimeError:
        return None


class _SourceMode(TorchFunctionMode):
    """Stamps the grad_fn of every tensor a torch call returns with the caller's location."""

    def __init__(self, root: str, modules: ModuleStack, captured_key: str, made_key: str,
                 current_step: Callable[[], int]):
        super().__init__()
        self.root = root
        self.modules = modules
        self.captured_key = captured_key
        self.made_key = made_key
        self.current_step = current_step
        self.last: tuple[str | None, int, Any, dict[str, Any]] = (None, -1, None, {})

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if compiling():  # dynamo traces this method: it must find nothing of graphscope in it
            return func(*args, **(kwargs or {}))
        first = sequence_mark()
        result = func(*args, **kwargs) if kwargs else func(*args)
        if torch.is_grad_enabled():  # under no_grad a call makes no autograd node to stamp
            self._stamp(result, first)
        return result

    def _stamp(self, result: Any, first: int) -> None:
        """Stamp each new grad_fn of `result`, and the new nodes behind it that this call made
        (numbered from `first` on), with the caller's location and module: ops inside a
        composite torch function run with this mode off. A node made before the call, by a
        path this mode does not see (a custom autograd.Function, a reentrant checkpoint), is
        not this line's: it keeps no location rather than a wrong one."""
        fresh = _fresh_grad_fns(result)
        if not fresh:
            return
        location = caller_location(sys._getframe(2), self.root)
        if location is None:
            return
        stamp = self._stamp_for(location, self.current_step(), self.modules.current)
        stack, captured = fresh, self.captured_key
        while stack:
            fn = stack.pop()
            metadata = fn.metadata
            if SOURCE_KEY in metadata or captured in metadata:
                continue  # stamped already, or captured by a step before this op ran
            metadata.update(stamp)
            if fn._sequence_nr() > first:  # nodes made by this call before `fn` may lie behind it
                stack.extend(child for child, _ in fn.next_functions
                             if child is not None and child._sequence_nr() >= first and not hasattr(child, "variable"))

    def _stamp_for(self, location: str, step: int, module: dict[str, Any] | None) -> dict[str, Any]:
        """What ops made at `location` in `step` inside the module call `module` are stamped
        with: the same dict as the last call's when all three are (a loop of ops at one line)."""
        last_location, last_step, last_module, stamp = self.last
        if location is not last_location or step != last_step or module is not last_module:
            stamp = {SOURCE_KEY: location, self.made_key: step, **(module or {})}
            self.last = (location, step, module, stamp)
        return stamp


def _fresh_grad_fns(result: Any) -> list[Any]:
    """The unstamped grad_fns of the tensors a torch call returned."""
    outputs = result if isinstance(result, (tuple, list)) else (result,)
    try:
        return [fn for out in outputs if isinstance(out, torch.Tensor)
                and (fn := out.grad_fn) is not None and SOURCE_KEY not in fn.metadata]
    except RuntimeError:
        # Reading grad_fn raises for a view made under no_grad whose base changed in place
        # since: PyTorch itself refuses such a tensor only when it is used in the graph.
        return [fn for fn in map(_readable_grad_fn, outputs) if fn is not None and SOURCE_KEY not in fn.metadata]


class ModeSwitch:
    """Takes the stamping mode off the torch-function stack and puts it back (only when it is
    the innermost mode: another mode entered after it stays as it is).

    Inside the mode's own `__torch_function__` (a `loss.backward()` dispatched through it)
    torch has taken the mode off for the while, so a request to turn it off that cannot be
    carried out at once is kept for the next chance: a module call, an optimizer step, or
    the return of `Tensor.backward` (a loop written without either)."""

    def __init__(self, mode: TorchFunctionMode):
        self.mode = mode
        self.off = False
        self.requested = False

    def request_off(self) -> None:
        """Turn the mode off now, or at the next chance."""
        self.requested = not self.turn_off()

    def at_chance(self, *_: Any) -> None:
        """A chance (see the class): carry out a request to turn off, or keep it."""
        if self.requested:
            self.requested = not self.turn_off()

    def turn_off(self) -> bool:
        """Take the mode off when it is the innermost one; True when it is off now."""
        depth = torch._C._len_torch_function_stack()
        if not self.off and depth and torch._C._get_function_stack_at(depth - 1) is self.mode:
            torch._C._pop_torch_function_stack()
            self.off = True
        return self.off

    def turn_on(self) -> None:
        """Put the mode back if this switch took it off (and forget a request to turn off)."""
        self.requested = False
        if self.off:
            torch._C._push_on_torch_function_stack(self.mode)
            self.off = False


ORIGINAL_TENSOR_BACKWARD = torch.Tensor.backward
_SWITCHES: list[ModeSwitch] = []  # the steady switch of each tracking in progress


@functools.wraps(ORIGINAL_TENSOR_BACKWARD)
def _backward_with_chance(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    """`Tensor.backward` while sources are tracked: once it returns, the stamping mode is back
    on the stack, a chance to step aside (see ModeSwitch). A function of this module, not a
    closure: nothing torch may cache of it holds a recording."""
    try:
        return ORIGINAL_TENSOR_BACKWARD(self, *args, **kwargs)
    finally:
        if _SWITCHES and not compiling():
            _SWITCHES[-1].at_chance()


@contextlib.contextmanager
def _chance_after_backward(switch: ModeSwitch) -> Iterator[None]:
    """Give `switch` its chance after each `Tensor.backward` made inside the block."""
    torch.Tensor.backward = _backward_with_chance
    _SWITCHES.append(switch)
    try:
        yield
    finally:
        _SWITCHES.remove(switch)
        if not _SWITCHES and torch.Tensor.backward is _backward_with_chance:
            torch.Tensor.backward = ORIGINAL_TENSOR_BACKWARD


class _OptimizerPause:
    """Takes the mode off the stack while an optimizer steps: a plain step updates parameters
    under no_grad, makes no autograd node, and would pay the mode's dispatch on every op.
    Steps with a closure (which runs a forward pass) or a differentiable optimizer keep it."""

    def __init__(self, mode: TorchFunctionMode):
        self.switch = ModeSwitch(mode)

    def before(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        """Optimizer step pre-hook (`args` starts with the optimizer): pause when this mode is
        the innermost one."""
        if len(args) > 1 or kwargs or optimizer.defaults.get("differentiable") or compiling():
            return
        self.switch.turn_off()

    def after(self, *_: Any) -> None:
        """Optimizer step post-hook, and the end of tracking: put the mode back."""
        self.switch.turn_on()


class Tracking(NamedTuple):
    """What a recording sees of source tracking: the module calls, and the switch that takes
    the stamping mode off once a loop is steady (see graphscope.capture.echo)."""

    modules: ModuleStack
    steady: ModeSwitch


@contextlib.contextmanager
def _quiet_about_own_hooks() -> Iterator[None]:
    """Keep the warning `torch.compile(module)` gives when global module hooks exist from a
    script that has none of its own: graphscope's hooks are not the script's, and its output
    must be what `python` prints. A script with global hooks of its own still gets it."""
    if getattr(nn_module, "_has_any_global_hook", lambda: True)():
        yield
        return
    warnings.filterwarnings("ignore", message=_HOOK_WARNING, category=UserWarning)
    entry = warnings.filters[0]
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            warnings.filters.remove(entry)
            getattr(warnings, "_filters_mutated", lambda: None)()


@contextlib.contextmanager
def track_sources(keys: StampKeys, current_step: Callable[[], int], root: str | None = None) -> Iterator[Tracking]:
    """Stamp every autograd node made inside the block with its creation site, the step it was
    made in (`current_step()` when it is made) and the module calls it ran in; nodes a capture
    already stamped existed before it and are left alone."""
    root = root or os.getcwd()
    modules = ModuleStack(root, keys.calls)
    mode = _SourceMode(root, modules, keys.captured, keys.made, current_step)
    pause, steady = _OptimizerPause(mode), ModeSwitch(mode)
    with _quiet_about_own_hooks():
        handles = [nn_module.register_module_forward_pre_hook(modules.enter),
                   nn_module.register_module_forward_hook(modules.leave, always_call=True),
                   nn_module.register_module_forward_pre_hook(steady.at_chance),
                   register_optimizer_step_pre_hook(pause.before), register_optimizer_step_post_hook(pause.after),
                   register_optimizer_step_post_hook(steady.at_chance)]
        try:
            with mode, _chance_after_backward(steady):
                try:
                    yield Tracking(modules, steady)
                finally:
                    pause.after()
                    steady.turn_on()
        finally:
            for handle in handles:
                handle.remove()
