"""Recording sessions: every backward and autograd.grad call becomes a captured step.

A `Session` replaces `torch.autograd.backward` and `torch.autograd.grad` (which
`Tensor.backward` calls through the module attribute) while it is active, and puts the
originals back when it ends, also after an error. Each call is traced just before the real
backward runs, while saved tensors are still alive, and hooked to record its gradients.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import sys
from typing import Any, Callable, Hashable, Mapping

import torch

from graphscope.errors import GraphscopeError
from graphscope.model.history import Partial, Steps
from graphscope.model import Snapshot
from graphscope.model.snapshot import STAMPS_TAKEN
from graphscope.capture import safety
from graphscope.capture.outputs import outputs_of
from graphscope.capture.overlay import hooked
from graphscope.capture.sources import Tracking, track_sources
from graphscope.capture.stats import StatsQueue
from graphscope.capture.steady import GRADIENT_DETAILS, Cadence, leaves_note, sampled, too_large
from graphscope.capture.echo import (Echo, Template, filler, fill_walk, fits, look, same_leaves, same_stamps,
                                     stamped_elsewhere, template, walk_like)
from graphscope.capture.checked import TakenStamps
from graphscope.capture.tracing import torch_is_tracing
from graphscope.capture.identity import LeafRegistry, Stamp, StampKeys
from graphscope.capture.walker import resolve_names, walk

ORIGINAL_BACKWARD = torch.autograd.backward
ORIGINAL_GRAD = torch.autograd.grad
_BACKWARD_SIGNATURE = inspect.signature(ORIGINAL_BACKWARD)
_sessions = itertools.count()
STEADY_ECHOES = 2
UNLIKE_WINDOW = 100  # steps after a step stamped unlike the step it repeats in which stamping stays on
TEMPLATES_PER_SHAPE = 8  # steps a graph shape is echoed from, one per set of leaves (a head chosen per step)
_UNSTAMPED = ("no file:line for this step's ops: stamping had stepped aside while the loop was steady, and this "
              "step's graph could not take the stamps of an earlier step (a new shape, one with other leaf tensors, "
              "one that reaches into graphs earlier steps captured, or one whose module calls were not made "
              "where that step's were); "
              "stamping resumes after it")
_GRAD_SIGNATURE = inspect.signature(ORIGINAL_GRAD)
_RECORDING: list[Session] = []  # the session recording now (one at most)


def capture(*outputs: torch.Tensor, gradient: Any = None, retain_graph: bool | None = None,
            create_graph: bool = False, names: Mapping[str, Any] | torch.nn.Module | None = None,
            saved: bool = False) -> Snapshot:
    """Trace `outputs`, run their backward with gradient hooks, return the annotated Snapshot."""
    captured = walk(outputs, resolve_names(names, sys._getframe(1)), saved=saved)
    queue = StatsQueue()
    with hooked(captured, queue):
        ORIGINAL_BACKWARD(list(outputs), grad_tensors=gradient, retain_graph=retain_graph,
                          create_graph=create_graph)
    queue.flush()
    return captured.freeze()


def _arguments(signature: inspect.Signature, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The call's arguments by name. A call that names each parameter once (as
    `loss.backward()` calls `torch.autograd.backward`, with four by position) of a function
    that takes every parameter by position or keyword, as `backward` and `grad` do, is matched
    directly. Any other goes through `signature.bind`, which raises for a call the function
    itself would refuse."""
    parameters = signature.parameters
    names = list(parameters)
    if (len(args) <= len(names) and kwargs.keys() <= set(names[len(args):])
            and all(p.kind is p.POSITIONAL_OR_KEYWORD for p in parameters.values())):
        arguments = dict(zip(names, args))
        arguments.update(kwargs)
        return arguments
    return dict(signature.bind(*args, **kwargs).arguments)


@functools.lru_cache(maxsize=256)
def _echo_notes(like: int, filled: bool) -> tuple[str, ...]:
    """The notes of an echo of step `like`: that it recorded leaves only and, when its stamps
    were filled in, from where; one tuple for all the echoes of a loop, made once, not a step."""
    return (leaves_note(like),) + ((STAMPS_TAKEN.format(step=like),) if filled else ())


def _first_line(exc: BaseException) -> str:
    """`RuntimeError: Trying to backward through the graph a second time ...` (first line)."""
    text = str(exc).strip().splitlines()
    return type(exc).__name__ + (f": {text[0]}" if text else "")


class Session:
    """Records every backward / autograd.grad call made while it is active, in call order.

    Each autograd node is stamped with the step it was first captured in, so a later step
    can tell history carried over from an earlier one, and walks only the nodes that are new
    (`snapshots` rebuilds each step's whole graph when it is read). With `source=True` (the
    default) every op made inside the block is stamped with the user's `file:line`, relative
    to `root` (the current folder unless given). With `gradients="auto"` (the default) a step
    whose graph repeats an earlier shape records only what its leaves received, except on a
    spaced sample of steps, and a graph of more than 100,000 new functions records only what
    its leaves received; "all" records every per-edge gradient of every step.
    """

    def __init__(self, names: Mapping[str, Any] | torch.nn.Module | None = None,
                 saved: bool = False, source: bool = True, root: str | None = None,
                 on_step: Callable[[int], None] | None = None, gradients: str = "auto"):
        if gradients not in GRADIENT_DETAILS:
            raise GraphscopeError(f"gradients must be one of {', '.join(GRADIENT_DETAILS)}, not {gradients!r}")
        self.names = names
        self.saved = saved
        self.source = source
        self.gradients = gradients
        self._cadence = Cadence()
        self._templates: dict[Hashable, tuple[Template, ...]] = {}  # by shape: one per set of leaves
        self._queue = StatsQueue()
        self._detail = "full"
        self.root = root
        self.on_step = on_step
        self._partials: list[Partial] = []
        self.snapshots = Steps(self._partials)
        self._key = f"graphscope.step.{next(_sessions)}"
        self._leaves = LeafRegistry()
        self._active = False
        self._busy = False
        self._sources: contextlib.ExitStack | None = None
        self._tracking: Tracking | None = None
        self._sites: dict[int, str] = {}
        self._steady_run = 0
        self._call_starts: list[int] = []
        self._unlike: dict[int, int] = {}  # template step: the last step of its shape stamped unlike it
        self._taken = TakenStamps()
        self._resumed = False  # stamping resumed during the last step: ops made before it are unstamped

    @property
    def sites(self) -> dict[int, str]:
        """Where each outermost module call was made (`file:line`), by call number."""
        return dict(self._tracking.modules.sites) if self._tracking is not None else dict(self._sites)

    def _current_step(self) -> int:
        """The step an op made now belongs to: the next one to be captured. Ops a backward call
        makes itself (with create_graph=True) are what the step after it differentiates."""
        return len(self._partials) + self._busy

    def __enter__(self) -> Session:
        if self._active:
            raise GraphscopeError("this Session is already recording")
        if torch.autograd.backward is not ORIGINAL_BACKWARD:
            raise GraphscopeError("another graphscope Session is already recording; nest captures "
                                  "inside one Session instead")
        self._sources = contextlib.ExitStack()
        if self.source:
            safety.guard_stamped_graphs()
            self._tracking = self._sources.enter_context(
                track_sources(StampKeys(self._key), self._current_step, self.root))
        torch.autograd.backward = _recording_backward
        torch.autograd.grad = _recording_grad
        _RECORDING.append(self)
        self._active = True
        return self

    def __exit__(self, *exc_info: Any) -> None:
        torch.autograd.backward = ORIGINAL_BACKWARD
        torch.autograd.grad = ORIGINAL_GRAD
        _RECORDING.clear()
        self._active = False
        if self._sources is not None:
            self._sources.close()
            self._sources = None
        if self._tracking is not None:  # its stamping mode calls back into this session: a cycle
            self._sites = dict(self._tracking.modules.sites)
            self._tracking = None
        self._queue.flush()  # the steps it leaves need no torch to be read (graphscope.aside forks a reader)

    def __len__(self) -> int:
        return len(self.snapshots)

    def __getitem__(self, step: int) -> Snapshot:
        return self.snapshots[step]

    def __repr__(self) -> str:
        state = "recording" if self._active else "recorded"
        calls = ", ".join(sorted({p.snapshot.call for p in self._partials}))
        return f"<graphscope session, {state}: {len(self._partials)} step(s)" + (f" ({calls})>" if calls else ">")

    def _capture(self, original: Callable[..., Any], signature: inspect.Signature, argument: str,
                 kind: str, args: tuple, kwargs: dict) -> Any:
        """Run `original` as a captured step; plainly when nested, without a graph, or made by
        torch while it traces a program (AOT autograd, `torch.func`), which is no step."""
        arguments = _arguments(signature, args, kwargs)
        outputs = outputs_of(arguments.get(argument))
        if self._busy or torch_is_tracing(outputs):
            return original(*args, **kwargs)
        resumed, self._resumed = self._resumed, False
        stamp = Stamp(self._key, len(self._partials), self._leaves, resumed)
        seen = look(outputs, stamp) if self.gradients == "auto" and not self.saved and kind == "backward" else None
        known = self._templates.get(seen.shape, ()) if seen is not None and seen.whole else ()
        repeated = next((t for t in known if same_leaves(seen, t)), None)
        unstamped = self._tracking is not None and self._tracking.steady.off
        shift = self._call_shift(repeated) if repeated and (unstamped or resumed) else None
        fitting = repeated is not None and fits(seen, repeated) and (shift is not None or not unstamped)
        if fitting and not sampled(stamp.step):
            return self._echo(original, Echo(seen, repeated, stamp, self._queue, shift), kind, args, kwargs)
        if unstamped and not fitting:  # a new shape: stamp again until the loop is steady
            self._resume()
            self._steady_run = 0
        try:
            captured = walk(outputs, resolve_names(self.names, sys._getframe(2)), saved=self.saved, stamp=stamp,
                            visited=None if seen is None else seen.visit)
        except GraphscopeError:
            captured = None
        if captured is None:  # no graph to capture: torch's own call says what is wrong, unchained
            return original(*args, **kwargs)
        filled = fill_walk(captured, filler(repeated, stamp.step, shift), stamp.step) if shift is not None else ()
        if filled:
            captured.notes.append(STAMPS_TAKEN.format(step=repeated.step))
        elif unstamped:
            captured.notes.append(_UNSTAMPED)
        like = None  # whether a full capture stamped (in part: stamping resumed) was stamped as its template
        if fitting and not unstamped and self._tracking is not None:
            like = walk_like(seen, captured, repeated, stamp.step)
            if not like:
                self._steady(repeated.step, stamp.step, False)  # a sampled full step stamped unlike its template
        self._busy = True
        self._detail = "full"
        try:
            if arguments.get("is_grads_batched"):
                captured.notes.append("gradients not recorded: is_grads_batched=True runs backward under vmap")
                return original(*args, **kwargs)
            large = too_large(len(captured.children)) if self.gradients == "auto" else None
            shape = captured.shape(len(self._partials))
            light = self.gradients == "auto" and not self.saved and not self._cadence.full(len(self._partials), shape)
            if large:
                captured.notes.append(large)
            elif light:
                captured.notes.append(self._cadence.note(shape))
            light = light or large is not None
            self._detail = "leaves" if light else "full"
            with hooked(captured, self._queue, leaves_only=light) as recorder:
                result = original(*args, **kwargs)
                if kind == "grad":
                    recorder.returned(arguments.get("inputs", ()), result)
                return result
        except BaseException as exc:
            captured.notes.append(f"this {kind} call failed: {_first_line(exc)}")
            if isinstance(exc, RuntimeError) and not self.saved:
                captured.find_freed()  # a saved walk has marked them already
            raise
        finally:
            self._busy = False
            step = len(self._partials)
            numbers = (seen is not None and seen.whole and self._detail == "full" and repeated is None
                       and not unstamped and len(known) < TEMPLATES_PER_SHAPE)  # a template's stamps are its own
            partial = captured.partial(step, kind, self._queue, self._detail, keep_index=bool(numbers))
            if numbers:
                self._templates[seen.shape] = (*known, template(seen, captured, step, partial))
                captured.index.clear()
            self._added(partial)
            if filled and self._taken.took(repeated.step, step, captured, filled):
                self._resume()
            if like is not None:  # its filled ops match the template: unlike, its stamped ones do not
                self._settle(repeated.step, like, not like and bool(filled), step)

    def _echo(self, original: Callable[..., Any], echo: Echo, kind: str, args: tuple, kwargs: dict) -> Any:
        """Run `original` as a step that echoes an earlier one (see graphscope.capture.echo);
        after two echoes stamped at the same lines, the stamping mode steps aside. An echo made
        partly before stamping resumed takes the stamps of those ops from its template, and
        counts toward neither when none of its stamped ops tells."""
        self._busy = True
        notes = _echo_notes(echo.template.step, bool(echo.filled))
        try:
            return original(*args, **kwargs)
        except BaseException as exc:
            notes += (f"this {kind} call failed: {_first_line(exc)}",)
            self._steady_run = -1
            raise
        finally:
            echo.finish()
            self._busy = False
            self._added(echo.partial(kind, notes))
            stamped = self._tracking is not None and not self._tracking.steady.off
            if stamped:
                like = same_stamps(echo)
                echo.unlike = not like and stamped_elsewhere(echo)
                if like or echo.unlike or not echo.filled:
                    self._steady(echo.template.step, echo.step, like)
            # After `_steady`, whose request to step aside a check due now must cancel, and
            # before `_settle`, which judges this echo's taken stamps with the others'.
            if echo.filled and self._taken.took(echo.template.step, echo.step):
                self._resume()
            if stamped:
                self._settle(echo.template.step, like, echo.unlike, echo.step)

    def _steady(self, template: int, step: int, like: bool) -> None:
        """Count steps of a known shape stamped as their template was (`like`); two in a row and
        stamping pauses, unless one was stamped unlike its template in the last UNLIKE_WINDOW
        steps (one graph shape built at several places: stamps taken from the template would
        be false)."""
        if self._steady_run < 0:
            self._steady_run = 0
        elif like:
            self._steady_run += 1
        else:
            self._steady_run = 0
            self._unlike[template] = step
        if self._steady_run >= STEADY_ECHOES and not self._unlike_lately(step):
            self._tracking.steady.request_off()

    def _resume(self) -> None:
        """Stamp again from now (a new shape, or a check of the stamps taken while aside)."""
        self._tracking.steady.turn_on()
        self._resumed = True

    def _settle(self, template: int, like: bool, elsewhere: bool, step: int) -> None:
        """Step `step` of `template`'s shape was stamped: keep or take back the stamps the steps
        of that shape took from it since the last check (see graphscope.capture.checked)."""
        self._taken.settle(template, like, elsewhere, step, self._partials, STAMPS_TAKEN.format(step=template))

    def _unlike_lately(self, step: int) -> bool:
        """True when a step was stamped unlike its template in the last UNLIKE_WINDOW steps."""
        return any(step - last < UNLIKE_WINDOW for last in self._unlike.values())

    def _call_shift(self, template: Template) -> int | None:
        """How many module calls later this step's ops ran than the template's: counted from the
        backward before each step, or else from each step's own backward, whichever puts each
        outermost module call of the template's ops at a call made at the same line (a
        validation pass between two steps moves the first count, not the second); None when
        neither does (one graph shape built at several places). Stamping is aside, or resumed
        during the step before from aside, so no step was stamped unlike its template in the
        last UNLIKE_WINDOW steps (see `_steady`)."""
        step = len(self._partials)

        def start(step: int) -> int:
            return self._call_starts[step - 1] if step > 0 else 0
        modules = self._tracking.modules
        for shift in (start(step) - start(template.step), modules.count - self._call_starts[template.step]):
            if all((site := modules.sites.get(number)) is not None and modules.sites.get(number + shift) == site
                   for number in template.outer_calls):
                return shift
        return None

    def _added(self, partial: Partial) -> None:
        """Keep a step's partial and tell whoever listens."""
        self._partials.append(partial)
        self._call_starts.append(self._tracking.modules.count if self._tracking is not None else 0)
        if self.on_step is not None:
            self.on_step(len(self._partials) - 1)


def _recording_backward(*args: Any, **kwargs: Any) -> Any:
    """torch.autograd.backward while a session records: a step of that session. A function of
    its own, not the session's method: what torch caches of `torch.autograd.backward` while
    it is in place (dynamo's map of torch functions) must hold no session."""
    if not _RECORDING:
        return ORIGINAL_BACKWARD(*args, **kwargs)
    return _RECORDING[0]._capture(ORIGINAL_BACKWARD, _BACKWARD_SIGNATURE, "tensors", "backward", args, kwargs)


def _recording_grad(*args: Any, **kwargs: Any) -> Any:
    """torch.autograd.grad while a session records (see _recording_backward)."""
    if not _RECORDING:
        return ORIGINAL_GRAD(*args, **kwargs)
    return _RECORDING[0]._capture(ORIGINAL_GRAD, _GRAD_SIGNATURE, "outputs", "grad", args, kwargs)


def record(names: Mapping[str, Any] | torch.nn.Module | None = None, saved: bool = False,
           source: bool = True, gradients: str = "auto") -> Session:
    """`with graphscope.record() as session:` records every backward inside the block; with
    gradients="all", every step keeps every per-edge gradient, not only the steps of a new
    shape and a spaced sample (see graphscope.capture.steady)."""
    return Session(names=names, saved=saved, source=source, gradients=gradients)
