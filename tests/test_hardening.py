"""Scripts as users write them: helpers beside the script, __main__ guards, data loader workers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from conftest import ROOT, run_graphscope

SCRIPTS = ROOT / "tests" / "scripts"


def test_script_imports_from_its_own_folder_under_main_guard(tmp_path):
    done = run_graphscope("render", str(SCRIPTS / "uses_helper.py"), "-o", str(tmp_path), "--format", "json",
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "grad [2.0, 4.0]" in done.stdout
    step = json.loads((tmp_path / "step-0000.json").read_text())
    w = next(n for n in step["nodes"] if n["name"] == "w")
    assert w["grad"]["values"] == [2.0, 4.0]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_data_loader_workers(tmp_path, context):
    done = run_graphscope("render", str(SCRIPTS / "loader.py"), "--context", context, "-o", str(tmp_path),
                          "--format", "json")
    assert done.returncode == 0, done.stderr
    assert "done" in done.stdout
    assert len(sorted(tmp_path.glob("step-*.json"))) == 4


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_unwritable_output_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    done = run_graphscope("render", str(SCRIPTS / "uses_helper.py"), "-o", str(locked / "out"))
    assert done.returncode == 2 and "cannot create output folder" in done.stderr


def test_output_folder_under_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    done = run_graphscope("render", str(SCRIPTS / "uses_helper.py"), "-o", str(tmp_path / "file" / "out"))
    assert done.returncode == 2 and "cannot create output folder" in done.stderr
    assert "Traceback" not in done.stderr


HOOKED = """
import sys
def hook(kind, value, tb):
    import traceback
    sys.stderr.write("".join("[mine] " + line for line in traceback.format_exception(kind, value, tb)))
sys.excepthook = hook
def fail():
    raise ValueError("no")
fail()
"""


def test_a_script_s_own_excepthook_shows_its_failure_as_python_does(tmp_path):
    """torch.distributed sets one that marks each line with the rank; scripts may too."""
    script = tmp_path / "hooked.py"
    script.write_text(HOOKED)
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
    done = run_graphscope("render", str(script), "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == plain.returncode == 1
    assert plain.stderr in done.stderr and plain.stderr.startswith("[mine] Traceback")


DEEP_CHAIN_DROPPED_UNDER_RECORD = """
import torch, graphscope
x = torch.ones(4, requires_grad=True)
with graphscope.record():
    y = x
    for _ in range(60_000):
        y = y * 1.0
    del y  # never passed to backward: freed with every node stamped
print("freed")
"""


def test_a_deep_graph_stamped_but_never_captured_is_freed_without_a_crash():
    """Stamping touches every node from Python, which makes PyTorch free the chain recursively:
    on the default 8 MiB stack a plain run of this survives, and so must one under record()."""
    import resource

    def default_stack():
        resource.setrlimit(resource.RLIMIT_STACK, (8 << 20, resource.getrlimit(resource.RLIMIT_STACK)[1]))

    done = subprocess.run([sys.executable, "-c", DEEP_CHAIN_DROPPED_UNDER_RECORD], capture_output=True, text=True,
                          preexec_fn=default_stack, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() == "freed"
