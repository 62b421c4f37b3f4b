"""Progress on long work: one status line redrawn in place on a terminal, nothing in CI or when piped.

While a user's script runs, its own output shares the terminal with the status line: the
line is wiped before the script writes and drawn again once the script has ended its line,
so neither garbles the other.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any, Callable, Iterator, TextIO

CLEAR = "\r\x1b[K"
INTERVAL = 0.2


def interactive(stream: TextIO) -> bool:
    """True on a real terminal outside CI: the only place a status line helps."""
    if os.environ.get("CI") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """A status line on `stream` (stderr by default); silent unless the stream is interactive."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = interactive(self.stream) if enabled is None else enabled
        self.text = ""
        self.drawn = False
        self.line_open = False
        self.lock = threading.RLock()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.show("")

    def show(self, text: str) -> None:
        """Replace the status line with `text` (empty text removes it)."""
        with self.lock:
            self.text = text
            self._redraw()

    def drawing(self, done: int, total: int) -> None:
        """Progress callback for drawing steps: `drawing step 3/20`."""
        self.show(f"graphscope: drawing step {done}/{total}")

    def _redraw(self) -> None:
        """Draw the current text, unless something else has half a line on the terminal."""
        if not self.enabled or self.line_open:
            return
        self.stream.write(CLEAR + self.text)
        self.stream.flush()
        self.drawn = bool(self.text)

    def wipe(self) -> None:
        """Take the status line off the terminal before someone else writes there."""
        if self.drawn:
            self.stream.write(CLEAR)
            self.stream.flush()
            self.drawn = False

    @contextlib.contextmanager
    def watching(self, label: Callable[[], str]) -> Iterator[None]:
        """Show `label()` every INTERVAL seconds while the block runs, sharing the terminal politely."""
        if not self.enabled:
            yield
            return
        stop = threading.Event()
        poller = threading.Thread(target=self._poll, args=(label, stop), daemon=True)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Shared(sys.stdout, self), _Shared(sys.stderr, self)
        poller.start()
        try:
            yield
        finally:
            stop.set()
            poller.join()
            sys.stdout, sys.stderr = saved
            if self.line_open:
                self.stream.write("\n")
                self.line_open = False

    def _poll(self, label: Callable[[], str], stop: threading.Event) -> None:
        """Thread body of `watching`: redraw when the label changes or the script ended its line."""
        while not stop.wait(INTERVAL):
            text = label()
            with self.lock:
                if text != self.text or not self.drawn:
                    self.text = text
                    self._redraw()


class _Shared:
    """A script's stdout or stderr that wipes the status line before each write."""

    def __init__(self, stream: TextIO, progress: Progress):
        self._stream = stream
        self._progress = progress

    def write(self, text: str) -> int:
        """Write for the script, keeping track of whether its line is finished."""
        with self._progress.lock:
            self._progress.wipe()
            written = self._stream.write(text)
            if text:
                self._stream.flush()
                self._progress.line_open = not text.endswith("\n")
            return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
