"""The `graphscope` command, run as a user runs it: in a real subprocess."""

from __future__ import annotations

import gc
import json
import re
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

import graphscope
from graphscope.cli import FULL_PASS_AFTER, main

from conftest import EXAMPLES, needs_dot, run_graphscope


def test_help_lists_render_and_its_options():
    result = CliRunner().invoke(main, ["render", "--help"])
    assert result.exit_code == 0
    for option in ("--out", "--format", "--engine", "--saved"):
        assert option in result.output


def test_render_writes_every_step_and_a_summary(tmp_path):
    out = tmp_path / "out"
    done = run_graphscope("render", str(EXAMPLES / "two_paths.py"), "-o", str(out), "--format", "svg,json")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.glob("step-*")) == [
        "step-0000.json", "step-0000.svg", "step-0001.json", "step-0001.svg"]
    assert "captured 2 step(s)" in done.stderr and str(out) in done.stderr
    assert "w.grad after a second backward: tensor([10.])" in done.stdout
    steps = [json.loads((out / f"step-000{i}.json").read_text()) for i in (0, 1)]
    assert [s["graph"]["step"] for s in steps] == [0, 1]
    w = [next(n for n in s["nodes"] if n["name"] == "w") for s in steps]
    assert [n["grad"]["values"] for n in w] == [[5.0], [10.0]]


def test_output_is_byte_identical_across_processes(tmp_path):
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / run
        done = run_graphscope("render", str(EXAMPLES / "weighted_root.py"), "-o", str(out),
                              "--format", "svg,json,dot", "--saved", without_dot=True)
        assert done.returncode == 0, done.stderr
        outputs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert outputs[0] == outputs[1]
    assert set(outputs[0]) >= {"step-0000.svg", "step-0000.json", "step-0000.dot", "growth.svg", "session.json"}
    for content in outputs[0].values():  # no address (a base64 hash in the report may hold "0x" by chance)
        assert re.search(rb"0x[0-9a-fA-F]{6,}", content) is None


def test_svg_without_system_dot_and_png_needs_one(tmp_path):
    done = run_graphscope("render", str(EXAMPLES / "dot_product.py"), "-o", str(tmp_path / "svg"),
                          without_dot=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "svg" / "step-0000.svg").read_bytes().startswith(b"<?xml")
    png = run_graphscope("render", str(EXAMPLES / "dot_product.py"), "-o", str(tmp_path / "png"),
                         "--format", "png", "--engine", "auto", without_dot=True)
    assert png.returncode == 2
    assert "PNG output needs a system Graphviz" in png.stderr
    assert "Traceback" not in png.stderr


@needs_dot
def test_system_engine_when_dot_is_installed(tmp_path):
    done = run_graphscope("render", str(EXAMPLES / "dot_product.py"), "-o", str(tmp_path),
                          "--format", "svg,png", "--engine", "system")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "step-0000.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (tmp_path / "step-0000.svg").read_bytes()


def test_failing_script_keeps_what_was_captured(tmp_path):
    done = run_graphscope("render", str(EXAMPLES / "wrong_update.py"), "-o", str(tmp_path), "--format", "json")
    assert done.returncode == 1
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-0000.json", "step-0001.json"]
    assert "TypeError" in done.stderr and "wrong_update.py" in done.stderr
    assert "graphscope/runner.py" not in done.stderr and "runpy" not in done.stderr
    step1 = json.loads((tmp_path / "step-0001.json").read_text())
    named = {n["name"]: n for n in step1["nodes"] if n["name"]}
    assert named["w"]["kind"] == "tensor" and named["w"]["is_leaf"] is False


def test_failed_backward_says_so_in_the_step(tmp_path):
    done = run_graphscope("render", str(EXAMPLES / "backward_twice.py"), "-o", str(tmp_path), "--format", "json")
    assert done.returncode == 1
    notes = json.loads((tmp_path / "step-0001.json").read_text())["graph"]["notes"]
    assert any("Trying to backward through the graph a second time" in n for n in notes)
    trace = done.stderr[done.stderr.index("Traceback"):done.stderr.index("RuntimeError: Trying")]
    files = re.findall(r'File "([^"]+)"', trace)
    assert files[0].endswith("backward_twice.py") and any(f.endswith("torch/autograd/graph.py") for f in files)
    assert not any("/graphscope/" in f or f.endswith("overrides.py") for f in files), files


def test_backward_of_a_detached_loss_fails_as_under_python(tmp_path):
    """torch's own error, not graphscope's chained before it, and no claim that no call was made."""
    script = tmp_path / "detached.py"
    script.write_text(
        "import torch\n"
        "w = torch.ones(2, requires_grad=True)\n"
        "loss = (w * 2).detach().sum()\n"
        "loss.backward()\n"
    )
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    done = run_graphscope("render", str(script), "-o", str(tmp_path / "out"))
    assert plain.returncode == done.returncode == 1
    error = plain.stderr.strip().splitlines()[-1]
    assert error.startswith("RuntimeError: element 0 of tensors does not require grad")
    assert error in done.stderr
    assert "GraphscopeError" not in done.stderr and "During handling" not in done.stderr
    assert "no backward or autograd.grad call ran on a tensor with an autograd graph" in done.stderr


def test_script_arguments_and_exit_status_pass_through(tmp_path):
    script = tmp_path / "exits.py"
    script.write_text(
        "import sys, torch\n"
        "x = torch.ones(1, requires_grad=True)\n"
        "(x * 2).sum().backward()\n"
        "print('argv', sys.argv[1:])\n"
        "sys.exit(int(sys.argv[1]))\n"
    )
    done = run_graphscope("render", str(script), "3", "--flag", "-o", str(tmp_path / "out"))
    assert done.returncode == 3
    assert "argv ['3', '--flag']" in done.stdout
    after_dashes = run_graphscope("render", str(script), "-o", str(tmp_path / "out"), "--", "4", "-o", "x")
    assert after_dashes.returncode == 4
    assert "argv ['4', '-o', 'x']" in after_dashes.stdout


def test_script_garbage_is_still_collected_while_imports_are_left_alone(tmp_path):
    script = tmp_path / "cycles.py"
    script.write_text(
        "import gc, weakref, torch\n"
        "class Cycle:\n"
        "    pass\n"
        "a = Cycle(); a.me = a; alive = weakref.ref(a); del a\n"
        "gc.collect()\n"
        "print('cycle collected', alive() is None, 'imports frozen', gc.get_freeze_count() > 0)\n"
        "x = torch.ones(1, requires_grad=True)\n"
        "(x * 2).sum().backward()\n"
    )
    done = run_graphscope("render", str(script), "-o", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "cycle collected True imports frozen True" in done.stdout


def test_a_recording_starts_no_full_collection_by_its_own_growth_while_young_passes_collect(tmp_path):
    """The collector makes a full pass after FULL_PASS_AFTER middle passes, not Python's 10:
    the records a long recording keeps grow a little every step, and each quarter of growth
    started a full pass over all of them. The script's young cycles are collected as before."""
    script = tmp_path / "young.py"
    script.write_text(
        "import gc, weakref, torch\n"
        "class Cycle:\n"
        "    pass\n"
        "a = Cycle(); a.me = a; alive = weakref.ref(a); del a\n"
        "junk = [[i] for i in range(5 * gc.get_threshold()[0])]\n"
        "print('thresholds', gc.get_threshold(), 'cycle collected', alive() is None)\n"
        "x = torch.ones(1, requires_grad=True)\n"
        "(x * 2).sum().backward()\n"
    )
    young, middle, _ = gc.get_threshold()
    done = run_graphscope("render", str(script), "-o", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert f"thresholds ({young}, {middle}, {FULL_PASS_AFTER}) cycle collected True" in done.stdout


def test_no_collection_scans_the_records_once_the_script_ends_yet_its_garbage_is_finalized(tmp_path):
    """Reading, checking and writing a run makes records that hold no cycles: the collector
    stays paused from the script's end to the process's, where Python's pass at exit still
    collects the script's garbage cycles and runs their finalizers."""
    script = tmp_path / "passes.py"
    script.write_text(
        "import atexit, gc, torch\n"
        "passes = []\n"
        "gc.callbacks.append(lambda phase, info: phase == 'start' and passes.append(info['generation']))\n"
        "class Closer:\n"
        "    def __del__(self):\n"
        "        print('finalized at exit', flush=True)\n"
        "w = torch.ones(3, requires_grad=True)\n"
        "for step in range(200):\n"
        "    (w * step).sum().backward()\n"
        "c = Closer(); c.me = c; del c\n"
        "gc.disable()  # the cycle stays garbage until the exit pass\n"
        "ended = len(passes)\n"
        "gc.enable()\n"
        "atexit.register(lambda: print('passes after the script', len(passes) - ended, flush=True))\n"
    )
    done = run_graphscope("render", str(script), "-o", str(tmp_path / "out"), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert "passes after the script 0" in done.stdout
    assert "finalized at exit" in done.stdout


def test_render_in_process_leaves_the_collector_as_it_found_it(tmp_path):
    """Run inside another program (CliRunner here), `render` resumes the collector it paused."""
    assert gc.isenabled()
    done = CliRunner().invoke(main, ["render", str(EXAMPLES / "two_paths.py"), "-o", str(tmp_path), "--format", "json"])
    assert done.exit_code == 0, done.output
    assert gc.isenabled()


def test_argparse_script_with_its_own_flag(tmp_path):
    plain = run_graphscope("render", str(EXAMPLES / "rnn_hidden_state.py"), "-o", str(tmp_path / "a"), "--format", "json")
    fixed = run_graphscope("render", str(EXAMPLES / "rnn_hidden_state.py"), "--detach", "-o", str(tmp_path / "b"),
                           "--format", "json")
    assert plain.returncode == fixed.returncode == 0, plain.stderr + fixed.stderr

    def sizes(folder):
        return [len(json.loads(p.read_text())["nodes"]) for p in sorted(folder.glob("step-*.json"))]

    assert sizes(tmp_path / "a") == sorted(set(sizes(tmp_path / "a")))
    assert len(set(sizes(tmp_path / "b"))) == 1


@pytest.mark.parametrize("args, message", [
    (["render", "missing.py"], "no such script: missing.py"),
    (["render", "bad.py"], "is not valid Python (line 1"),
    (["render", "binary.py"], "is not a Python script"),
    (["render", "ok.py", "--format", "gif"], "unknown format 'gif'"),
    (["render", "ok.py", "-o", "afile"], "is a file"),
])
def test_bad_input_gets_a_message_and_status_2(tmp_path, args, message):
    (tmp_path / "bad.py").write_text("def broken(:\n")
    (tmp_path / "binary.py").write_bytes(b"\x00\x01\x02")
    (tmp_path / "ok.py").write_text("print('ok')\n")
    (tmp_path / "afile").write_text("")
    done = run_graphscope(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_engine_is_a_usage_error(tmp_path):
    done = run_graphscope("render", str(EXAMPLES / "dot_product.py"), "--engine", "magic", cwd=tmp_path)
    assert done.returncode == 2 and "magic" in done.stderr


def test_script_without_backward_says_nothing_was_captured(tmp_path):
    (tmp_path / "quiet.py").write_text("print('hello')\n")
    done = run_graphscope("render", "quiet.py", cwd=tmp_path)
    assert done.returncode == 0 and "nothing captured" in done.stderr


def test_stale_step_files_are_replaced(tmp_path):
    (tmp_path / "step-0007.svg").write_text("old")
    (tmp_path / "notes.txt").write_text("mine")
    done = run_graphscope("render", str(EXAMPLES / "dot_product.py"), "-o", str(tmp_path))
    assert done.returncode == 0
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-0000.svg"]
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(shutil.which("graphscope") is None, reason="console script not installed")
def test_console_script_is_installed(tmp_path):
    import subprocess

    done = subprocess.run(["graphscope", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and "graphscope" in done.stdout


def test_a_script_that_changes_folder_moves_neither_output_nor_locations(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    script = tmp_path / "wander.py"
    script.write_text(
        "import os, torch\n"
        "os.chdir('elsewhere')\n"
        "print('file', __file__)\n"
        "w = torch.ones(1, requires_grad=True)\n"
        "for _ in range(3):\n"
        "    loss = (w * 2).sum()\n"
        "    grad, = torch.autograd.grad(loss, w)\n"
        "    w = w - 0.1 * grad\n"
    )
    done = run_graphscope("render", "wander.py", "-o", "out", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"file {script.resolve()}" in done.stdout  # absolute, as `python wander.py` gives it
    assert (tmp_path / "out" / "session.json").exists() and not (tmp_path / "elsewhere" / "out").exists()
    step = json.loads((tmp_path / "out" / "step-0002.json").read_text())
    assert {n.get("source") for n in step["nodes"] if n["kind"] == "function"} >= {"wander.py:6", "wander.py:8"}
    assert "wander.py:8" in done.stderr and "torch.no_grad()" in done.stderr  # the doctor read the script


def test_a_picture_graphviz_cannot_lay_out_is_skipped_and_the_run_still_written(tmp_path, monkeypatch):
    from graphscope.errors import LayoutError
    from graphscope.renderers import engine

    real = engine._run_embedded

    def slow_on_step_1(source, fmt, timeout):
        if 'label="step 1 ' in source:
            raise LayoutError(f"Graphviz layout took longer than {timeout:g} s and was stopped")
        return real(source, fmt, timeout)

    monkeypatch.setattr(engine, "_run_embedded", slow_on_step_1)
    done = CliRunner().invoke(main, ["render", str(EXAMPLES / "two_paths.py"), "-o", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "step-0000.svg").exists() and not (tmp_path / "step-0001.svg").exists()
    assert "not drawn: step-0001.svg: Graphviz layout took longer than 120 s and was stopped" in done.output
    assert len(graphscope.load(tmp_path / "session.json")) == 2
    page = (tmp_path / "index.html").read_text()
    assert "not drawn: step-0001.svg" in page and 'id="gs-step-0"' in page
    step = json.loads(re.search(r'id="gs-step-1">(.*?)</script>', page).group(1))
    assert step["svg"] is None and step["graph"]["nodes"]  # the report draws it in the browser
