"""Readable large graphs: module paths, clusters, collapsed modules, folded chains, split leaves."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import torch
from torch import nn

import graphscope
from graphscope import NodeKind
from graphscope.renderers import to_svg
from graphscope.renderers.dot import to_dot
from graphscope.analysis.spans import SPAN
from graphscope.analysis.view import ViewOptions, readable

from conftest import EXAMPLES, run_graphscope


def transformer_step(layers: int):
    """One recorded backward through a small TransformerEncoder."""
    torch.manual_seed(0)
    model = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), layers,
                                  enable_nested_tensor=False)
    with graphscope.record() as session:
        model(torch.randn(2, 3, 8)).sum().backward()
    return session[0]


def test_ops_know_the_module_call_that_made_them():
    snap = transformer_step(2)
    modules = {n.module for n in snap.nodes if n.kind is NodeKind.FUNCTION}
    assert {"model.layers.0.self_attn", "model.layers.1.linear1", "model.layers.0.norm2"} <= modules
    addmm = [n for n in snap.nodes if n.op == "AddmmBackward0"]
    assert addmm and all(n.module and n.module.startswith("model.layers.") for n in addmm)


def test_modules_called_through_a_loop_variable_are_named_as_their_parameters_are():
    """`for layer in layers: h = layer(h)` calls three modules by one name: each op is put in
    `layers.0`, `layers.1`, `layers.2`, the paths its parameters are named by, not in `layer`."""
    torch.manual_seed(0)
    layers = nn.ModuleList([nn.Linear(3, 3) for _ in range(3)])
    h = torch.randn(2, 3)
    with graphscope.record() as session:
        for layer in layers:
            h = torch.relu(layer(h))
        h.sum().backward()
    snap = session[0]
    by_op = [n.module for n in snap.nodes if n.op == "AddmmBackward0"]
    assert sorted(by_op) == ["layers.0", "layers.1", "layers.2"]
    weights = {n.name for n in snap.nodes if n.kind is NodeKind.LEAF}
    assert {f"{path}.weight" for path in by_op} <= weights


def test_dot_groups_functions_in_nested_module_clusters():
    snap = transformer_step(2)
    dot = to_dot(snap)
    labels = re.findall(r'subgraph "cluster_\d+" \{\n\s+graph \[[^\]]*label="([^"]+)"', dot)
    assert "model" in labels and "model.layers.0" in labels and "model.layers.0.self_attn" in labels
    assert dot.count("{") == dot.count("}")


def innermost_clusters(dot: str) -> dict[str, str | None]:
    """Node id -> label of the innermost cluster its statement sits in, from DOT text."""
    where: dict[str, str | None] = {}
    labels: list[str | None] = []
    for line in dot.splitlines():
        text = line.strip()
        if text.startswith("subgraph"):
            labels.append(None)
        elif text.startswith("graph [") and labels:
            labels[-1] = re.search(r'label="([^"]+)"', text).group(1)
        elif text == "}" and labels:
            labels.pop()
        elif text.startswith('"') and "->" not in text:
            where[text[1:text.index('"', 1)]] = labels[-1] if labels else None
    return where


def test_collapsed_module_boxes_sit_in_the_cluster_of_their_parent_call():
    view = readable(transformer_step(3), ViewOptions(depth=4))
    where = innermost_clusters(to_dot(view))
    boxes = view.of_kind("module")
    assert len(boxes) > 6
    assert all(where[box.id] == box.name.rsplit(".", 1)[0] for box in boxes)
    functions = [n for n in view.nodes if n.kind is NodeKind.FUNCTION and n.module]
    assert functions and all(where[n.id] == n.module for n in functions)


def test_a_module_call_of_one_node_is_drawn_as_that_node_not_as_a_box():
    snap = transformer_step(3)
    singles = {n.module for n in snap.of_kind(NodeKind.FUNCTION)
               if n.module and "dropout" in n.module and sum(m.module == n.module for m in snap.nodes) == 1}
    assert singles  # dropout calls: one node each, and no parameter
    view = readable(snap, ViewOptions(depth=4))
    assert not {b.name for b in view.of_kind("module")} & singles
    assert all(b.folded > 1 for b in view.of_kind("module"))
    assert {n.module for n in view.of_kind(NodeKind.FUNCTION)} >= singles


def test_small_graphs_are_drawn_whole():
    snap = transformer_step(1)
    assert len(snap.nodes) < 150
    assert readable(snap) is snap


def test_large_model_collapses_to_module_boxes_within_budget():
    snap = transformer_step(24)
    assert len(snap.nodes) > 1500
    view = readable(snap)
    assert len(view.nodes) <= 150
    boxes = view.of_kind("module")
    assert sorted(b.name for b in boxes) == sorted(f"model.layers.{i}" for i in range(24))
    inside = [n for n in snap.of_kind("function") if n.module and n.module.startswith("model.layers.")]
    assert sum(b.folded for b in boxes) == len(inside)  # each box counts the ops of its call
    hidden = len(snap.nodes) - (len(view.nodes) - len(boxes))  # every node is drawn, or inside a box
    assert hidden == len(inside) + sum(1 for n in snap.of_kind("leaf") if n.id not in {v.id for v in view.nodes})
    assert any("--full draws every node" in note for note in view.notes)
    svg = to_svg(snap)
    assert b"model.layers.23" in svg and b"full draws every node" in svg


def test_depth_option_and_full_view():
    snap = transformer_step(3)
    deeper = readable(snap, ViewOptions(depth=4))
    assert {b.name for b in deeper.of_kind("module")} >= {"model.layers.0.self_attn", "model.layers.2.linear1"}
    assert readable(snap, ViewOptions(full=True)) is snap


@pytest.mark.parametrize("options, message", [({"budget": 0}, "budget must be"), ({"budget": 2.5}, "budget must be"),
                                              ({"depth": 0}, "depth must be")])
def test_a_view_that_could_draw_nothing_is_refused(tmp_path, options, message):
    w = torch.ones(1, requires_grad=True)
    with pytest.raises(graphscope.GraphscopeError, match=message):
        graphscope.render((w * 2).sum(), tmp_path / "x.svg", **options)


def test_long_chain_is_folded_into_one_node_that_says_how_many():
    w = torch.ones(1, requires_grad=True)
    y = w
    for _ in range(997):
        y = y - 0.1
    snap = graphscope.trace(y.sum())
    view = readable(snap)
    folded = [n for n in view.nodes if n.folded]
    assert [(n.op, n.folded) for n in folded] == [("SubBackward0", 997)]
    assert "× 997 SubBackward0" in to_dot(view)
    assert sorted(n.title for n in view.nodes) == ["SubBackward0", "SumBackward0", "SumBackward0", "w", "y"]


def test_a_weight_shared_by_every_step_is_drawn_once_per_use():
    torch.manual_seed(0)
    cell = nn.RNNCell(3, 4)
    h = torch.zeros(1, 4)
    for _ in range(60):
        h = cell(torch.randn(1, 3), h)
    snap = graphscope.trace(h.sum(), names=cell)
    view = readable(snap)
    copies = [n for n in view.nodes if n.name and n.name.startswith("weight_hh (use ")]
    assert len(copies) == 60
    assert any(f"edges across more than {SPAN} ranks are drawn again beside each far use" in note
               for note in view.notes)
    assert to_svg(snap).startswith(b"<?xml")


def test_render_options_choose_the_view(tmp_path):
    from conftest import EXAMPLES, run_graphscope

    folded = run_graphscope("render", str(EXAMPLES / "control_flow.py"), "--budget", "5", "-o",
                            str(tmp_path / "small"), "--format", "dot,json")
    full = run_graphscope("render", str(EXAMPLES / "control_flow.py"), "--budget", "5", "--full", "-o",
                          str(tmp_path / "full"), "--format", "dot,json")
    assert folded.returncode == full.returncode == 0
    assert "× 9 MulBackward0" in (tmp_path / "small" / "step-0000.dot").read_text()
    assert "× 9" not in (tmp_path / "full" / "step-0000.dot").read_text()
    for folder in ("small", "full"):
        data = (tmp_path / folder / "step-0000.json").read_text()
        assert data.count('"MulBackward0"') >= 9


def test_each_module_call_is_its_own_box_made_when_its_ops_were(tmp_path):
    script = EXAMPLES / "gru_language_model.py"
    done = run_graphscope("render", str(script), "-o", str(tmp_path), "--format", "dot,json", "--no-report")
    assert done.returncode == 1 and "Trying to backward through the graph a second time" in done.stderr
    dot = (tmp_path / "step-0001.dot").read_text()
    boxes = re.findall(r'^\s+"(module:[^"]+)" \[.*?label="([^"]*)"', dot, re.M)
    labels_by_path = {}
    for _, label in boxes:
        labels_by_path.setdefault(label.split("\\n")[0], []).append(label)
    assert len(labels_by_path["model.rnn"]) == 2  # step 0's call, carried over, and step 1's own
    assert sum("made in step 0" in label for label in labels_by_path["model.rnn"]) == 1
    assert all("made in step" not in label for label in labels_by_path["model.decoder"])
    step1 = graphscope.load(tmp_path / "step-0001.json")[0]
    rnn_ops = [n for n in step1.of_kind("function") if n.module == "model.rnn"]
    carried = [n for n in rnn_ops if n.carried_over(1)]
    box_ops = sorted(int(re.search(r"(\d+) ops", label).group(1)) for label in labels_by_path["model.rnn"])
    assert box_ops == sorted([len(carried), len(rnn_ops) - len(carried)])


def test_a_boxed_view_keeps_the_steps_loss_scale_and_gradient_detail():
    snap = dataclasses.replace(transformer_step(2), loss_scale=1024.0, gradients="leaves")
    view = readable(snap, ViewOptions(depth=1))
    assert view.of_kind("module")
    assert (view.loss_scale, view.gradients) == (1024.0, "leaves")
