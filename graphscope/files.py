"""Writing files atomically, so an interrupted run never leaves half a file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

from graphscope.errors import GraphscopeError


def check_file_target(path: Path) -> None:
    """Fail before any work when `path` cannot become a file: it is a folder, or a file
    stands where one of its folders would be."""
    if path.is_dir():
        raise GraphscopeError(f"cannot write {str(path)!r}: it is a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise GraphscopeError(f"cannot write {str(path)!r}: {str(parent)!r} is a file, not a folder")
            return


def write_atomic(path: Path, data: bytes | Iterable[bytes]) -> Path:
    """Write `data` (bytes, or pieces of it) to a temporary file beside `path`, then rename
    it into place."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise GraphscopeError(f"cannot write to {str(path.parent)!r}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.writelines([data] if isinstance(data, bytes) else data)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    return path
