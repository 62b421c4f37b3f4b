"""session.json's step lines and the steps' JSON, written by a child process while the doctor
reads the run: the files are the very bytes written without it, and nothing is lost or left
behind when the child fails or is stopped."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

import graphscope
from graphscope.analysis.steps import StepSpec
from graphscope.capture.runner import record_script
from graphscope.doctor import diagnose
from graphscope.model.history import kept
from graphscope.output import write_run, writing_aside

from conftest import EXAMPLES

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="written aside on Linux only")
FORMATS = ["json", "dot"]
STEPS = StepSpec.parse("0,3,-1")


@pytest.fixture(autouse=True)
def aside_from_one_step(monkeypatch):
    """The examples are short runs: write aside from their first step on."""
    import graphscope.output as output

    monkeypatch.setattr(output, "ASIDE_AFTER_STEPS", 1)


def recorded(script: str = "wrong_update_retain.py"):
    """A run of an example whose graph grows, as `graphscope render` holds it."""
    run = record_script(str(EXAMPLES / script))
    return dataclasses.replace(run, snapshots=kept(run.snapshots))


def files(folder: Path) -> dict[str, bytes]:
    """Every file of a folder by name, hidden ones included."""
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def written_here(run, folder: Path, formats=FORMATS) -> dict[str, bytes]:
    """What write_run writes with nothing written aside."""
    write_run(dataclasses.replace(run, findings=diagnose(run)), folder, formats, STEPS, report=False)
    return files(folder)


@pytest.mark.parametrize("script", ["wrong_update_retain.py", "training_loop.py"])
@pytest.mark.parametrize("formats", [FORMATS, ["dot"]], ids=["json", "no-json"])
def test_files_written_aside_are_the_bytes_written_without(tmp_path, script, formats):
    run = recorded(script)
    folder = tmp_path / "aside"
    folder.mkdir()
    with writing_aside(run, folder, formats, STEPS) as aside:
        assert aside is not None and aside.pid != os.getpid()
        run = dataclasses.replace(run, findings=diagnose(run))
        assert aside.wait() is not None  # the child did write them
        report = write_run(run, folder, formats, STEPS, report=False, aside=aside)
    assert files(folder) == written_here(recorded(script), tmp_path / "here", formats)
    assert {p.name for p in report.paths} >= {"session.json", "step-0000.dot"} | ({"step-0000.json"} if "json" in formats else set())
    assert len(graphscope.load(folder / "session.json")) == len(run.snapshots)


def test_a_short_run_is_written_here(tmp_path, monkeypatch):
    import graphscope.output as output

    monkeypatch.setattr(output, "ASIDE_AFTER_STEPS", 100)
    with writing_aside(recorded(), tmp_path, FORMATS, STEPS) as aside:
        assert aside is None


def test_a_failed_child_loses_nothing(tmp_path, monkeypatch):
    import graphscope.aside as aside_module

    def broken(*_):
        raise OSError("disk full")

    monkeypatch.setattr(aside_module, "step_lines", broken)  # the child's copy fails, this process's does not
    run = recorded()
    folder = tmp_path / "aside"
    folder.mkdir()
    with writing_aside(run, folder, FORMATS, STEPS) as aside:
        run = dataclasses.replace(run, findings=diagnose(run))
        assert aside.wait() is None
        write_run(run, folder, FORMATS, STEPS, report=False, aside=aside)
    assert files(folder) == written_here(recorded(), tmp_path / "here")


def test_leaving_early_stops_the_child_and_leaves_no_scratch_file(tmp_path):
    run = recorded()
    with pytest.raises(KeyboardInterrupt):
        with writing_aside(run, tmp_path, FORMATS, STEPS) as aside:
            raise KeyboardInterrupt
    assert aside.exited is not None
    with pytest.raises(ChildProcessError):
        os.waitpid(aside.pid, os.WNOHANG)  # reaped: no zombie left
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_recording_leaves_no_statistic_to_compute(monkeypatch):
    """The child that writes aside runs no torch: every gradient statistic a recording queued
    is computed when it ends, so reading its steps computes none."""
    import importlib

    import torch

    stats = importlib.import_module("graphscope.capture.stats")  # graphscope.capture is also a function

    w = torch.randn(100, requires_grad=True)  # too large to be reduced at once: queued
    with graphscope.record(source=False) as session:
        for _ in range(5):
            (w * 2).sum().backward()
    monkeypatch.setattr(stats, "grad_stats", lambda grads: pytest.fail("a statistic was computed after the recording"))
    for snapshot in session.snapshots:
        assert snapshot.find("w").grad.norm == pytest.approx(w.grad.norm().item() * (snapshot.step + 1) / 5)


def test_an_interrupt_while_the_doctor_reads_leaves_the_folder_as_it_was(tmp_path):
    """The child writes scratch files only: the earlier run's files stay as they were, and
    no step of the interrupted run shows up beside them."""
    folder = tmp_path / "out"
    folder.mkdir()
    written_here(recorded("training_loop.py"), folder)
    before = files(folder)
    with pytest.raises(KeyboardInterrupt):
        with writing_aside(recorded(), folder, FORMATS, STEPS) as aside:
            assert aside.wait() is not None  # everything written aside, then Ctrl-C
            raise KeyboardInterrupt
    assert files(folder) == before


def test_a_failed_fork_leaves_no_scratch_file(tmp_path, monkeypatch):
    def no_fork():
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    with writing_aside(recorded(), tmp_path, FORMATS, STEPS) as aside:
        assert aside is None
    assert list(tmp_path.iterdir()) == []


def test_a_child_whose_parent_is_gone_removes_what_it_wrote(tmp_path, monkeypatch):
    """A child that outlives its parent (killed, out of memory) takes its scratch files with it;
    here it is made to believe so, and this process writes everything itself."""
    monkeypatch.setattr(os, "getppid", lambda: 1)
    run = recorded()
    folder = tmp_path / "aside"
    with writing_aside(run, folder, FORMATS, STEPS) as aside:
        assert aside.wait() is None
        assert [p.name for p in folder.iterdir()] == []
        run = dataclasses.replace(run, findings=diagnose(run))
        write_run(run, folder, FORMATS, STEPS, report=False, aside=aside)
    assert files(folder) == written_here(recorded(), tmp_path / "here")


def test_a_folder_not_made_yet_is_written_aside(tmp_path):
    """Under torchrun each rank writes OUT/rank-K/, which does not exist before its first file."""
    with writing_aside(recorded(), tmp_path / "rank-0", FORMATS, STEPS) as aside:
        assert aside is not None and aside.wait() is not None
