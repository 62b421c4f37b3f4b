"""Running a user's script as `__main__`, with its own argv and folder on sys.path, and
recording it: `record_script` is the one way `render`, `doctor` and the docs gallery run a
script, and it returns a `Run` that says what the script did."""

from __future__ import annotations

import os
import runpy
import sys
import traceback
import types
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from graphscope.capture import safety
from graphscope.capture.compiled import watching_graph_breaks
from graphscope.capture.distributed import ddp_parameters
from graphscope.capture.frames import display_path, is_internal, is_runner_frame
from graphscope.capture.probes import watching
from graphscope.capture.scaler import watching_scalers
from graphscope.capture.session import Session
from graphscope.errors import GraphscopeError
from graphscope.model import Failure, Run


class ScriptEnd(NamedTuple):
    """How a script ended: its exit status and, if it raised, the exception at the user's line
    (and, raised inside DistributedDataParallel, the names of DDP's parameters by index)."""

    status: int
    failure: Failure | None = None
    ddp_parameters: tuple[str, ...] = ()


def check_script(path: str) -> Path:
    """The script's path, or a clear error when it is missing, unreadable or not Python."""
    script = Path(path)
    if not script.exists():
        raise GraphscopeError(f"no such script: {path}")
    if not script.is_file():
        raise GraphscopeError(f"not a file: {path}")
    try:
        source = script.read_bytes()
    except OSError as exc:
        raise GraphscopeError(f"cannot read {path}: {exc.strerror}") from None
    if b"\0" in source:
        raise GraphscopeError(f"{path} is not a Python script (it holds binary data)")
    try:
        compile(source, str(script), "exec")
    except SyntaxError as exc:
        where = f"line {exc.lineno}" if exc.lineno else "somewhere"
        raise GraphscopeError(f"{path} is not valid Python ({where}: {exc.msg})") from None
    return script


def _exit_status(code: object) -> int:
    """The process status `sys.exit(code)` would give."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _without_runner(tb: types.TracebackType | None) -> types.TracebackType | None:
    """A copy of a traceback without the runner's frames."""
    kept = []
    while tb is not None:
        if not is_runner_frame(tb.tb_frame.f_code.co_filename):
            kept.append(tb)
        tb = tb.tb_next
    copy = None
    for part in reversed(kept):
        copy = types.TracebackType(copy, part.tb_frame, part.tb_lasti, part.tb_lineno)
    return copy


def _print_user_traceback(exc: BaseException) -> None:
    """Print the exception as Python would for the script alone: without the runner's frames,
    in its own traceback and in those of the exceptions it was raised from; through the hook
    the script set, if any (torch.distributed's marks every line with the rank)."""
    if sys.excepthook is not sys.__excepthook__:
        whole = exc.__traceback__
        try:  # Python's own hook prints the exception's traceback, not the one it is given
            sys.excepthook(type(exc), exc, exc.with_traceback(_without_runner(whole)).__traceback__)
        finally:
            exc.with_traceback(whole)
        return
    shown = traceback.TracebackException.from_exception(exc)
    pending, seen = [shown], set()
    while pending:
        part = pending.pop()
        if part is None or id(part) in seen:
            continue
        seen.add(id(part))
        part.stack = traceback.StackSummary.from_list([f for f in part.stack if not is_runner_frame(f.filename)])
        pending += [part.__cause__, part.__context__]
    print("".join(shown.format()), end="", file=sys.stderr)


def failure_of(exc: BaseException, root: str) -> Failure:
    """The exception, located at the innermost line of the user's own files in its traceback:
    code compiled from text (`<string>`: a namedtuple's or a dataclass's constructor, which
    a Ctrl-C can land in) has no line to show."""
    location, tb = None, exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not is_internal(filename) and not filename.startswith("<"):
            location = f"{display_path(filename, root)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return Failure(type(exc).__name__, str(exc), location)


def run_script(path: str, args: Sequence[str] = ()) -> ScriptEnd:
    """Run `path` as `__main__` the way `python path args...` would (its `__file__` absolute);
    returns how it ended. The working directory is given back afterwards: a script that
    changes it moves neither graphscope's output nor its reading of the script."""
    given = check_script(path)
    script = given.resolve()
    safety.raise_stack_limit()
    saved_argv, saved_path, saved_cwd = sys.argv[:], sys.path[:], os.getcwd()
    sys.argv = [str(given), *args]
    sys.path.insert(0, str(script.parent))
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        return ScriptEnd(_exit_status(exc.code))
    except KeyboardInterrupt as exc:
        print("KeyboardInterrupt", file=sys.stderr)
        return ScriptEnd(130, failure_of(exc, str(script.parent)))
    except BaseException as exc:  # the user's script failed: show it as Python would
        _print_user_traceback(exc)
        return ScriptEnd(1, failure_of(exc, str(script.parent)), ddp_parameters(exc.__traceback__))
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        os.chdir(saved_cwd)
    return ScriptEnd(0)


def record_script(path: str | os.PathLike[str], args: Sequence[str] = (), saved: bool = False,
                  source: bool = True, on_step: Callable[[int], None] | None = None,
                  gradients: str = "auto") -> Run:
    """Run a script inside a recording Session: every backward it makes becomes a step
    (`on_step` hears each step's number as it is captured; `gradients` as for Session). The
    Run says how the script ended, what it warned, what its optimizers stepped and where
    torch.compile broke its graphs; source lines are relative to the script's folder, so
    output does not depend on where the script lives on this machine.
    """
    script = check_script(str(path))
    root = str(script.resolve().parent)
    with Session(saved=saved, source=source, root=root, on_step=on_step, gradients=gradients) as session, \
            watching(root, lambda: len(session) - 1) as watch, watching_scalers(lambda: len(session) - 1) as scalers, \
            watching_graph_breaks(root) as breaks:
        end = run_script(str(path), args)
    updates = scalers.steps()
    session.snapshots.scales.update(scalers.scales(updates))
    return Run(session.snapshots, script.name, end.status, failure=end.failure,
               warnings=tuple(watch.warned.values()), optimizer_steps=tuple(watch.optimizer_steps),
               idle_parameters=watch.idle_parameters(), root=root, optimizers=watch.optimizer_records(),
               scaler=updates, sites=session.sites, graph_breaks=tuple(breaks.found.values()),
               ddp_parameters=end.ddp_parameters)
