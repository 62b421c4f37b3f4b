"""Ctrl-C during a long run: what was captured is written, and every file is complete."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import graphscope
from graphscope.capture.runner import run_script

LONG_RUN = """
import time, torch
w = torch.ones(3, requires_grad=True)
for step in range(100000):
    (w * 2).sum().backward()
    if step == 3:
        print("ready", flush=True)
    time.sleep(0.01)
"""


def test_sigint_writes_what_was_captured_and_only_complete_files(tmp_path):
    script = tmp_path / "long.py"
    script.write_text(LONG_RUN)
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "graphscope", "render", str(script), "-o", str(out),
                                "--format", "svg,json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    try:
        assert process.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "KeyboardInterrupt" in stderr
    assert "error script-failed at long.py:" in stderr and "the script was interrupted (Ctrl-C) at long.py:" in stderr, stderr
    steps = sorted(out.glob("step-*.json"))
    assert len(steps) >= 4
    for path in steps:
        json.loads(path.read_text())
    assert len(graphscope.load(out / "session.json")) >= 4
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_an_interrupt_inside_generated_code_is_placed_at_the_users_line(tmp_path):
    # a Ctrl-C can land in a namedtuple's constructor, compiled from text: its file is
    # `<string>`, and the doctor said the script was interrupted at `<string>:1`
    script = tmp_path / "generated.py"
    script.write_text("exec(compile('def interrupted():\\n    raise KeyboardInterrupt', '<string>', 'exec'))\n"
                      "x = 1\n"
                      "interrupted()\n")
    end = run_script(str(script))
    assert end.status == 130 and end.failure.type == "KeyboardInterrupt"
    assert end.failure.location == "generated.py:3"
