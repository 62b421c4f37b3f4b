"""The shape of the package: no import cycle, no module too long to read in one sitting, and torch
only in the capture wing; the model, analysis, doctor, renderers and report import no torch."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, load_tool


def test_the_house_keeps_its_bars():
    assert load_tool("imports").problems(ROOT) == []


def test_the_bars_catch_a_cycle_a_long_module_and_torch_outside_capture(tmp_path):
    package = tmp_path / "graphscope"
    (package / "analysis").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "analysis" / "__init__.py").write_text("")
    (package / "model.py").write_text("def f():\n    from graphscope.analysis import view\n")
    (package / "analysis" / "view.py").write_text("import torch\nfrom graphscope.model import f\n" + "x = 1\n" * 600)
    found = load_tool("imports").problems(tmp_path)
    assert found == ["import cycle: graphscope.analysis.view <-> graphscope.model",
                     "graphscope.analysis.view: 602 lines (more than 500)",
                     "graphscope.analysis.view imports torch outside graphscope.capture"]


def test_importing_the_torch_free_wings_loads_no_torch():
    code = ("import sys, importlib.util; sys.modules['graphscope'] = type(sys)('graphscope'); "
            f"sys.modules['graphscope'].__path__ = [{str(ROOT / 'graphscope')!r}]; "
            "import graphscope.model, graphscope.analysis.view, graphscope.analysis.diff, graphscope.doctor, "
            "graphscope.renderers.dot, graphscope.report.builder, graphscope.store; "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
