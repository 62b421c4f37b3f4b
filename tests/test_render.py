"""Rendering: DOT text, the embedded and system layout engines, formats, escaping, JSON."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import xml.etree.ElementTree as ET

import networkx as nx
import pytest
import torch

import graphscope
from graphscope import GraphscopeError, Snapshot
from graphscope.renderers import engine, to_svg
from graphscope.renderers.dot import to_dot
from graphscope.renderers.text import text_tree
from graphscope.capture.runner import record_script
from graphscope.model import compact_json, to_node_link
from graphscope.model.snapshot import node_link_json
from graphscope.numbers import number

from conftest import EXAMPLES, needs_dot

SVG_NS = "{http://www.w3.org/2000/svg}"


def sample() -> Snapshot:
    """Two paths to one leaf, captured with its gradients."""
    w = torch.tensor([1.0], requires_grad=True)
    x = torch.tensor([2.0], requires_grad=True)
    a = torch.add(w, x)
    a.retain_grad()
    y = torch.mul(a, torch.add(w, 1))
    return graphscope.capture(y)


def test_dot_is_deterministic_and_sorted():
    first, second = to_dot(sample()), to_dot(sample())
    assert first == second
    for line in first.splitlines():
        if line.strip().startswith('"') and "[" in line:
            keys = [part.split("=")[0].strip(" [") for part in line[line.index("[") + 1:-2].split('", ')]
            assert keys == sorted(keys)


def test_embedded_svg_is_valid_xml_with_node_ids_and_legend():
    svg = to_svg(sample())
    root = ET.fromstring(svg)
    ids = {g.get("id") for g in root.iter(f"{SVG_NS}g")}
    assert {"leaf_0", "leaf_1", "output_0"} <= ids
    text = " ".join(t.text or "" for t in root.iter(f"{SVG_NS}text"))
    assert "leaf tensor: receives .grad" in text and "retain_grad()" in text
    assert ".grad [5]" in text


def edge_texts(svg: bytes) -> list[str]:
    """The text drawn on each edge of an SVG picture, one string per edge."""
    return [" ".join(t.text or "" for t in g.iter(f"{SVG_NS}text"))
            for g in ET.fromstring(svg).iter(f"{SVG_NS}g") if g.get("class") == "edge"]


@pytest.mark.parametrize("engine_name", ["embedded", pytest.param("system", marks=needs_dot)])
def test_every_gradient_on_an_edge_is_drawn_beside_the_legend(engine_name):
    w = torch.linspace(-1, 1, 12).reshape(4, 3).requires_grad_()
    x = torch.linspace(0, 2, 6).reshape(2, 3)
    with graphscope.record(names={"w": w}) as session:
        torch.tanh(x @ w.T).sum().backward()
    step = session[0]
    svg = to_svg(step, engine=engine_name)
    texts = edge_texts(svg)
    labelled = [e for e in step.edges if e.grad is not None]
    assert len(labelled) == len(step.edges) > 3
    assert sum(bool(text.strip()) for text in texts) == len(labelled)
    assert f"‖{number(w.grad.norm().item())}‖" in " ".join(texts)
    assert "edge label: the gradient that flowed back" in svg.decode()


def test_the_legend_does_not_say_never_zeroed_of_a_grad_zeroed_every_iteration():
    # a GAN's generator step: D's .grad still holds the D step's gradient, zeroed each iteration
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    with graphscope.record(names={"w": w}) as session:
        for _ in range(2):
            w.grad = None
            (w * 3).sum().backward()
            (w * w).sum().backward()
    step = session[3]
    assert step.find("w").grad.values == tuple((3 + 2 * w.detach()).tolist())
    legend = " ".join(t.text or "" for g in ET.fromstring(to_svg(step)).iter(f"{SVG_NS}g")
                      if g.get("id", "").startswith("legend_") for t in g.iter(f"{SVG_NS}text"))
    assert "never zeroed" not in legend
    assert "purple border: .grad holds more than this step's gradient (not zeroed before this backward)" in legend


def test_the_legend_does_not_blame_an_earlier_backward_for_a_grad_the_script_set():
    """A .grad set by hand before the first backward also holds more than the step gave; no
    earlier backward exists to have left it there."""
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    w.grad = torch.ones(2)
    with graphscope.record(names={"w": w}) as session:
        (w * 3).sum().backward()
    step = session[0]
    assert step.find("w").grad.values == (4.0, 4.0) and step.find("w").grad_step.values == (3.0, 3.0)
    legend = " ".join(t.text or "" for g in ET.fromstring(to_svg(step)).iter(f"{SVG_NS}g")
                      if g.get("id", "").startswith("legend_") for t in g.iter(f"{SVG_NS}text"))
    assert "purple border: .grad holds more than this step's gradient (not zeroed before this backward)" in legend
    assert "earlier backward" not in legend


def test_legend_names_the_not_stored_kind_only_for_a_tensor_that_is_not_retained():
    retained_only = to_dot(sample())
    assert "retain_grad()" in retained_only and ".grad not stored" not in retained_only
    w = torch.tensor([1.0], requires_grad=True)
    hidden = w * 2
    both = to_dot(graphscope.capture((hidden * hidden).sum(), names={"w": w, "hidden": hidden}))
    assert ".grad not stored" in both and "retain_grad()" not in both


@pytest.mark.parametrize("scale", [1.0, 1e-5, 1e3])
def test_gradient_values_are_labelled_with_the_digits_pytorch_prints(scale):
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    snap = graphscope.capture((w * torch.tensor([-1.10694, 0.33, 2.5]) * scale).sum())
    printed = str(w.grad).removeprefix("tensor([").removesuffix("])")  # as print(w.grad) shows it
    label = "[" + ", ".join(part.strip() for part in printed.split(",")) + "]"
    assert f".grad {label}" in to_dot(snap), (label, to_dot(snap))


def test_long_notes_are_wrapped_so_the_picture_keeps_a_readable_width():
    note = "this backward call failed: " + "a long PyTorch message " * 12
    snap = sample()
    dot = to_dot(Snapshot(nodes=snap.nodes, edges=snap.edges, notes=(note,)))
    label = next(line for line in dot.splitlines() if "this backward call failed" in line)
    text = re.search(r'label="([^"]*)"', label).group(1)
    lines = re.split(r"\\[nl]", text)
    assert len(lines) >= 4 and max(len(part) for part in lines) <= 72


def test_embedded_engine_renders_many_times_in_one_process():
    snap = sample()
    outputs = {to_svg(snap) for _ in range(5)}
    assert len(outputs) == 1


def test_png_without_system_dot_says_what_to_do(monkeypatch):
    monkeypatch.setattr(engine, "system_dot", lambda: None)
    with pytest.raises(GraphscopeError, match="PNG output needs a system Graphviz"):
        engine.layout("digraph { a }", "png", "auto")
    with pytest.raises(GraphscopeError, match="no system Graphviz"):
        engine.layout("digraph { a }", "svg", "system")
    assert engine.layout("digraph { a }", "svg", "auto").startswith(b"<?xml")


def test_unknown_engine_and_format():
    with pytest.raises(GraphscopeError, match="unknown engine"):
        engine.layout("digraph { a }", "svg", "neato-please")
    with pytest.raises(GraphscopeError, match="unknown format"):
        graphscope.render(sample(), "out.bmp")


def test_embedded_engine_reports_bad_dot():
    with pytest.raises(GraphscopeError, match="Graphviz failed"):
        engine.layout("digraph { a -> }", "svg", "embedded")


def test_layout_time_limit_stops_a_slow_render():
    chain = "digraph {" + " ".join(f"n{i} -> n{i + 1};" for i in range(3000)) + "}"
    with pytest.raises(GraphscopeError, match="longer than"):
        engine.layout(chain, "svg", "embedded", timeout=0.01)


@needs_dot
@pytest.mark.parametrize("fmt, magic", [("svg", b"<?xml"), ("png", b"\x89PNG"), ("pdf", b"%PDF")])
def test_system_engine_formats(tmp_path, fmt, magic):
    path = graphscope.render(sample(), tmp_path / f"graph.{fmt}", engine="system")
    assert path.read_bytes().startswith(magic)


@pytest.mark.parametrize("fmt", ["svg", "dot", "json", "txt"])
def test_render_by_suffix_or_argument(tmp_path, fmt):
    snap = sample()
    by_suffix = graphscope.render(snap, tmp_path / f"graph.{fmt}")
    by_argument = graphscope.render(snap, tmp_path / "graph.out", format=fmt)
    assert by_suffix.read_bytes() == by_argument.read_bytes()
    assert not list(tmp_path.glob(".*.tmp"))


def test_render_accepts_a_tensor(tmp_path):
    w = torch.ones(2, requires_grad=True)
    loss = (w * 3).sum()
    data = json.loads(graphscope.render(loss, tmp_path / "loss.json").read_text())
    assert {n["name"] for n in data["nodes"]} >= {"w", "loss"}


@pytest.mark.parametrize("script", ["compiled_model.py", "mixed_precision.py", "nan_gradient.py", "gru_language_model.py",
                                    "custom_function.py"])
def test_step_json_is_written_with_its_keys_in_sorted_order_without_sorting_them(script):
    """node_link_json skips the sort: every dict it writes must already be in sorted order."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        run = record_script(str(EXAMPLES / script))
    assert run.snapshots
    for snapshot in run.snapshots:
        assert node_link_json(snapshot) == compact_json(to_node_link(snapshot))


def test_json_round_trips_and_loads_in_networkx():
    snap = sample()
    text = snap.to_json()
    again = Snapshot.from_json(text)
    assert again == snap and again.to_json() == text
    graph = nx.node_link_graph(json.loads(text), edges="edges")
    assert isinstance(graph, nx.DiGraph)
    assert graph.nodes[snap.find("w").id]["grad"]["values"] == [5.0]
    assert set(graph.nodes) == {n.id for n in snap.nodes}


def test_nonfinite_numbers_are_strict_json():
    x = torch.tensor([0.0, 1.0], requires_grad=True)
    snap = graphscope.capture((torch.sqrt(x) * 0.0).sum())
    text = snap.to_json()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    assert '"nan"' in text
    assert Snapshot.from_json(text).find("x").grad.nonfinite == 1


def test_hostile_names_are_escaped_everywhere():
    hostile = '<script>alert(1)</script> & "quotes" {braces}\nnewline ü'
    x = torch.ones(1, requires_grad=True)
    snap = graphscope.capture((x * 2).sum(), names={hostile: x})
    assert snap.find(hostile).name == hostile
    root = ET.fromstring(to_svg(snap))
    texts = [t.text for t in root.iter(f"{SVG_NS}text")]
    assert any(t and "<script>alert(1)</script>" in t for t in texts)
    assert not list(root.iter(f"{SVG_NS}script")) and not list(root.iter("script"))
    assert Snapshot.from_json(snap.to_json()).find(hostile).name == hostile


def test_text_tree_shows_kinds_and_gradients():
    text = text_tree(sample())
    assert "y  [output]" in text
    assert "a  [non-leaf, retains grad]" in text and ".grad [2]" in text
    assert "w  [leaf]" in text and ".grad [5]" in text
    assert "(see above)" not in text.splitlines()[1]
    assert str(sample()) == text


def test_snapshot_shows_itself_as_svg_in_jupyter():
    svg = sample()._repr_svg_()
    assert svg.startswith("<?xml") and "</svg>" in svg


def test_render_lays_out_each_drawn_steps_view_once_for_its_svg_and_the_report(tmp_path, monkeypatch):
    import graphscope.renderers as renderers
    from graphscope.analysis.steps import StepSpec
    from graphscope.capture.runner import record_script
    from graphscope.model.history import kept
    from graphscope.output import write_run
    from conftest import EXAMPLES

    run = record_script(str(EXAMPLES / "training_loop.py"))
    run = dataclasses.replace(run, snapshots=kept(run.snapshots))
    made = []
    monkeypatch.setattr(renderers, "readable", lambda snapshot, view: made.append(snapshot.step) or snapshot)
    report = write_run(run, tmp_path, ["svg"], StepSpec.parse("0,-1"))
    assert list(report.selection.steps) == [0, 19]
    assert sorted(made) == sorted(set(made))  # each step's view made once, however many readers
