"""Shared fixtures: paths, a CLI runner in a real subprocess, and PyTorch as the reference."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def load_tool(name: str):
    """A script of tools/ (not part of the installed package), imported as a module."""
    spec = importlib.util.spec_from_file_location(f"{name}_tool", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module

needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None and not os.environ.get("GRAPHSCOPE_REQUIRE_DOT"),
    reason="no system Graphviz `dot` on PATH (CI sets GRAPHSCOPE_REQUIRE_DOT=1 to make this a failure)",
)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def path_without_dot() -> str:
    """A PATH that has this Python's bin folder but no folder holding a system `dot`."""
    keep = [os.path.dirname(sys.executable)]
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if folder and not os.path.exists(os.path.join(folder, "dot")) and folder not in keep:
            keep.append(folder)
    return os.pathsep.join(keep)


def run_graphscope(*args: str, cwd: Path | None = None, without_dot: bool = False,
                   timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m graphscope ...` in a fresh process, as a user would."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="random")
    if without_dot:
        env["PATH"] = path_without_dot()
    return subprocess.run(
        [sys.executable, "-m", "graphscope", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def examples() -> Path:
    """The examples folder."""
    return EXAMPLES
