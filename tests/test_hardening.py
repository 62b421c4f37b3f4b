"""Scripts as users write them: helpers beside the script, __main__ guards, data loader workers."""

from __future__ import annotations

import json
import os
import stat

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
