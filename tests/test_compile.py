"""torch.compile, torch.export and torch.func under graphscope: a script runs as it does under
`python`, and each compiled region is one node holding its backward graph. PyTorch's own run
is the reference: the printed losses, the final parameters bit for bit, the backward graph
AOT autograd hands to its compiler."""

from __future__ import annotations

import io
import json
import os
import runpy
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import graphscope
from graphscope.capture.compiled import region_of
from graphscope.capture.runner import record_script
from graphscope.model import Run
from graphscope.output import graph_break_lines
from graphscope.report.builder import node_rows

from conftest import EXAMPLES, run_graphscope

SCRIPTS = Path(__file__).resolve().parent / "scripts"
SUMMARY = "graphscope: captured"


def run_python(*args: str) -> subprocess.CompletedProcess:
    """`python SCRIPT ARGS` in a fresh process: the plain run graphscope must match."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=600)


def script_stderr(stderr: str) -> str:
    """What the script itself wrote to standard error: everything before graphscope's summary."""
    return stderr.split(SUMMARY)[0]


def render_and_plain(tmp: Path, backend: str) -> dict:
    """The compiled MLP run plainly and under `graphscope render`, each saving its final parameters."""
    script = str(SCRIPTS / "compiled_mlp.py")
    plain = run_python(script, backend, str(tmp / "plain.pt"))
    out = tmp / "out"
    rendered = run_graphscope("render", script, backend, str(tmp / "graphscope.pt"), "-o", str(out),
                              "--format", "json", timeout=600)
    return {"plain": plain, "rendered": rendered, "out": out, "tmp": tmp}


@pytest.fixture(scope="module")
def aot_eager(tmp_path_factory) -> dict:
    """One plain and one graphscope run of the compiled MLP (aot_eager backend), shared."""
    return render_and_plain(tmp_path_factory.mktemp("aot_eager"), "aot_eager")


def check_runs_as_under_python(runs: dict) -> None:
    """Same printed losses, same standard error, same final parameters bit for bit."""
    plain, rendered = runs["plain"], runs["rendered"]
    assert plain.returncode == 0, plain.stderr
    assert rendered.returncode == 0, rendered.stderr
    assert rendered.stdout == plain.stdout and plain.stdout.count(" loss ") == 3
    assert script_stderr(rendered.stderr) == plain.stderr
    for ours, theirs in zip(torch.load(runs["tmp"] / "graphscope.pt"), torch.load(runs["tmp"] / "plain.pt")):
        assert torch.equal(ours, theirs)


def check_one_compiled_region(out: Path) -> dict:
    """Step 0 holds one compiled node, with its backward graph, fed by the 4 named parameters."""
    step = json.loads((out / "step-0000.json").read_text())
    compiled = [n for n in step["nodes"] if n["kind"] == "compiled"]
    assert len(compiled) == 1
    region = compiled[0]
    assert region["region"] == "model" and region["inner_ops"] > 0
    assert region["inner_ops"] == sum(n["kind"] == "op" for n in region["inner"]["nodes"])
    leaves = [n for n in step["nodes"] if n["kind"] == "leaf"]
    assert [n["name"] for n in leaves] == ["model.0.weight", "model.0.bias", "model.2.weight", "model.2.bias"]
    into = {e["source"]: e for e in step["edges"] if e["target"] == region["id"]}
    for leaf in leaves:  # zero_grad() every step: what flowed into each leaf is its .grad
        assert into[leaf["id"]]["grad"] == leaf["grad"]
    return region


def test_compiled_script_prints_and_trains_as_under_python(aot_eager):
    check_runs_as_under_python(aot_eager)


def test_a_compiled_module_is_one_region_named_as_the_script_names_it(aot_eager):
    region = check_one_compiled_region(aot_eager["out"])
    assert region["source"] == "compiled_mlp.py:23" and region["op"] == "CompiledFunctionBackward"
    ops = {n["op"] for n in region["inner"]["nodes"] if n["kind"] == "op"}
    assert {"mm", "threshold_backward"} <= ops
    (loaded,) = graphscope.load(aot_eager["out"])[0].of_kind("compiled")  # session.json keeps it all
    assert (loaded.region, loaded.inner_ops, loaded.inner) == (region["region"], region["inner_ops"], region["inner"])


def test_the_inductor_backend_too(tmp_path, monkeypatch):
    """The default backend, inductor, compiling from an empty cache as on a fresh machine."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor-cache"))
    runs = render_and_plain(tmp_path, "inductor")
    check_runs_as_under_python(runs)
    check_one_compiled_region(runs["out"])


def test_a_region_rebuilt_from_the_compile_cache_is_read_unseen_by_modes():
    """After a cache hit AOT autograd keeps a function that rebuilds the backward graph with
    fx tracing: graphscope runs it with subclass handling on and every mode off."""
    seen = []

    class Logging(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append(func)
            return func(*args, **(kwargs or {}))

    def backward(tangent, saved):
        return torch.mul(tangent, saved.cos())

    forward_cls = type("CompiledFunction", (), {"compiled_bw": None, "_lazy_backward_info": SimpleNamespace(
        bw_module_fn=lambda: torch.fx.symbolic_trace(backward))})
    with Logging(), torch._C.DisableTorchFunction():
        region = region_of(SimpleNamespace(_forward_cls=forward_cls, metadata={}, next_functions=()), lambda _: None)
    assert seen == [] and region.inner_ops == 2
    assert [(n["kind"], n["op"]) for n in region.inner["nodes"]] == [
        ("input", None), ("input", None), ("op", "cos"), ("op", "mul"), ("output", None)]


def test_the_region_holds_the_backward_graph_aot_autograd_compiled():
    """A backend built like aot_eager that keeps the backward graph its compiler is handed."""
    from torch._dynamo.backends.common import aot_autograd
    from functorch.compile import make_boxed_func

    handed = []

    def keep(graph_module, _):
        handed.append([node.target._opname for node in graph_module.graph.nodes if node.op == "call_function"])
        return make_boxed_func(graph_module.forward)

    torch.manual_seed(0)
    model = torch.compile(nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)),
                          backend=aot_autograd(fw_compiler=lambda gm, _: make_boxed_func(gm.forward),
                                               bw_compiler=keep))
    with graphscope.record() as session:
        model(torch.randn(4, 3)).square().sum().backward()
    region = session[0].of_kind("compiled")[0]
    assert len(handed) == 1 and region.inner_ops == len(handed[0])
    assert [n["op"] for n in region.inner["nodes"] if n["kind"] == "op"] == handed[0]
    assert region.region == "model"
    rows = dict(node_rows(region, session[0]))  # what the report shows when the box is clicked
    assert rows["region"] == "model" and rows["backward graph"].startswith(f"{region.inner_ops} ops in its backward")
    ops = [n for n in region.inner["nodes"] if n["kind"] == "op"]
    assert [rows[op["id"]].split("(")[0] for op in ops] == handed[0]


def record_as_plain(script: Path, capsys) -> Run:
    """Record a script in this process, and check it printed what it prints run plainly."""
    run = record_script(script)
    ours = capsys.readouterr().out
    with redirect_stdout(io.StringIO()) as plain:
        runpy.run_path(str(script), run_name="__main__")
    assert ours == plain.getvalue()
    return run


def test_graph_breaks_are_listed_and_both_parts_are_regions(capsys):
    run = record_as_plain(SCRIPTS / "graph_break.py", capsys)
    assert run.status == 0 and len(run) == 2
    assert [(b.location, "print" in b.reason) for b in run.graph_breaks] == [("graph_break.py:11", True)]
    assert graph_break_lines(run)[1].startswith("  graph_break.py:11: ")
    regions = run[0].of_kind("compiled")
    assert len(regions) == 2 and {r.region for r in regions} == {"train_step"}
    assert all(r.inner_ops > 0 for r in regions)


def test_a_graph_break_is_placed_at_the_user_s_line_not_in_graphscope(capsys):
    """Dynamo traces .item() through graphscope's stamping mode and reports the break there;
    the listed place is the user's line that called it."""
    run = record_as_plain(SCRIPTS / "graph_break_item.py", capsys)
    line = next(n for n, text in enumerate((SCRIPTS / "graph_break_item.py").read_text().splitlines(), 1)
                if "s = y.item()" in text)
    assert [b.location for b in run.graph_breaks] == [f"graph_break_item.py:{line}"]


def test_export_func_transforms_and_checkpointing_are_not_steps(capsys):
    """torch.func.grad calls torch.autograd.grad itself: that is torch's work, not a step."""
    run = record_as_plain(SCRIPTS / "traced_elsewhere.py", capsys)
    assert run.status == 0 and run.failure is None
    assert len(run) == 1 and run[0].call == "backward"  # the checkpointed loss.backward() alone


def test_a_module_compiled_in_place_is_named_by_the_module_that_owns_its_parameters(capsys):
    """`net.compile()` compiles the module's forward; the region is `net`, not `forward`."""
    run = record_script(EXAMPLES / "compiled_model.py")
    assert run.status == 0 and len(run) == 6
    (region,) = run[0].of_kind("compiled")
    assert region.region == "net" and region.inner_ops > 0
    assert [leaf.name for leaf in run[0].of_kind("leaf")] == ["net.fc1.weight", "net.fc1.bias", "net.fc2.weight",
                                                             "net.fc2.bias"]
