"""Large graphs drawn as views that can be laid out in seconds: weights split by rank span at
any size, identical calls folded, parameters listed on module boxes, layout cost known before
any layout, and the compact legend that lists exactly the colours the picture uses."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from torch import nn

import graphscope
from graphscope.analysis.spans import layout_cost, ranks
from graphscope.analysis.view import ViewOptions, readable
from graphscope.capture.runner import record_script
from graphscope.errors import LayoutError
from graphscope.model import Finding, NodeKind, Run
from graphscope.numbers import number
from graphscope.output import summary, write_run
from graphscope.renderers import to_svg
from graphscope.renderers.dot import to_dot
from graphscope.renderers.styles import FILL_TEXT

from conftest import EXAMPLES, needs_dot, run_graphscope

SCRIPTS = Path(__file__).parent / "scripts"
SVG = "{http://www.w3.org/2000/svg}"


def width_pt(svg: bytes) -> float:
    """The width of an SVG picture in points."""
    return float(re.search(rb'<svg width="([\d.]+)pt"', svg).group(1))


@pytest.fixture(scope="module")
def unrolled() -> Run:
    """The unrolled RNNCell example: 20 steps of one cell, one backward."""
    return record_script(str(EXAMPLES / "unrolled_rnn.py"))


@pytest.fixture(scope="module")
def gru() -> Run:
    """The GRU language model with its hidden state carried over: two steps."""
    return record_script(str(EXAMPLES / "gru_language_model.py"))


def test_an_unrolled_cell_under_the_budget_is_drawn_narrow(unrolled):
    snapshot = unrolled.snapshots[0]
    assert len(snapshot.nodes) <= 150
    assert width_pt(to_svg(snapshot)) <= 2000


def test_a_weight_used_at_every_step_is_drawn_beside_each_use_numbered_from_the_top(unrolled):
    view = readable(unrolled.snapshots[0])
    copies = [n for n in view.nodes if n.name and n.name.startswith("cell.weight_hh (use ")]
    assert len(copies) == 20
    rank = ranks(view)
    users = [view.users_of(c.id)[0] for c in sorted(copies, key=lambda c: int(c.name.split()[2]))]
    assert [rank[u] for u in users] == sorted(rank[u] for u in users)  # use 1 is the first step
    assert all(abs(rank[view.users_of(c.id)[0]] - rank[c.id]) == 1 for c in copies)


def test_the_layout_cost_is_known_before_any_layout(unrolled, gru):
    whole = unrolled.snapshots[0]
    assert layout_cost(whole).segments > 1000 and layout_cost(readable(whole)).segments < 100
    for snapshot in gru.snapshots:
        assert not layout_cost(snapshot).fits()
        full = readable(snapshot, ViewOptions(full=True))
        assert layout_cost(full).fits()
        functions = {n.id for n in snapshot.of_kind(NodeKind.FUNCTION)}
        assert functions <= {n.id for n in full.nodes}  # --full still draws every op


def alternating_chain(ops: int) -> torch.Tensor:
    """A chain of `ops` ops, adds and multiplies in turn, so no run of one op folds it."""
    x = torch.ones(3, requires_grad=True)
    y = x
    for i in range(ops):
        y = y * 1.0001 if i % 2 else y + 0.5
    return y.sum()


def test_edge_labels_count_twice_in_the_ranks_a_layout_may_have():
    # a 4,400-op chain with its gradients written on the edges ran out of the embedded
    # Graphviz's stack (8,800 of dot's ranks) instead of being refused as too big
    loss = alternating_chain(2200)
    before = graphscope.trace(loss)
    with graphscope.record() as session:
        loss.backward()
    after = session[0]
    full = ViewOptions(full=True)
    assert layout_cost(before).dot_ranks == 2203 and layout_cost(before).fits()
    assert layout_cost(after).dot_ranks == 2 * 2203 - 1 and not layout_cost(after).fits()
    assert "on 2,203 ranks, 4,405 with a rank for each row of edge labels" in str(layout_cost(after))
    unlabelled = to_svg(after, view=full)  # drawn whole, its gradients in widths and tooltips
    edges = [g for g in ET.fromstring(unlabelled).iter(f"{SVG}g") if g.get("class") == "edge"]
    assert len(edges) == len(after.edges) and not [t for g in edges for t in g.iter(f"{SVG}text")]
    text = " ".join(" ".join((t.text or "").split()) for t in ET.fromstring(unlabelled).iter(f"{SVG}text"))
    assert "gradients are not written on the edges: with them Graphviz would lay out 4,405 ranks" in text
    assert "edge label" not in text and "edge width: log ‖grad‖" in text
    assert b"<svg" in to_svg(before, view=full)


def test_a_picture_too_big_even_without_its_edge_labels_is_refused_with_its_size():
    snapshot = graphscope.trace(alternating_chain(4100))
    with pytest.raises(LayoutError, match="too big to lay out in time even as a view .*on 4,103 ranks\\); "
                                          "session.json holds every node"):
        to_svg(snapshot, view=ViewOptions(full=True))


def test_full_view_of_a_graph_that_fits_is_the_graph_itself():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    with graphscope.record() as session:
        model(torch.randn(3, 4)).sum().backward()
    assert readable(session[0], ViewOptions(full=True)) is session[0]


def cell_run(steps: int):
    """An RNNCell unrolled `steps` times, recorded, and the cell."""
    torch.manual_seed(0)
    cell = nn.RNNCell(4, 8)
    h = torch.zeros(1, 8)
    with graphscope.record() as session:
        for _ in range(steps):
            h = cell(torch.randn(1, 4), h)
        h.sum().backward()
    return session[0], cell


def test_identical_calls_in_a_row_are_one_box_listing_the_shared_weights():
    snapshot, cell = cell_run(200)
    view = readable(snapshot)
    boxes = view.of_kind(NodeKind.MODULE)
    assert len(boxes) == 1 and boxes[0].folded == 200 * 6  # addmm and t for each weight, add, tanh
    label = to_dot(view).split(f'"{boxes[0].id}" [', 1)[1].split("];", 1)[0]
    assert "× 200 cell" in label and "6 per call" in label
    for name, parameter in cell.named_parameters():
        shape = "(" + ", ".join(map(str, parameter.shape)) + ("," if parameter.dim() == 1 else "") + ")"
        assert f"{name} {shape} .grad ‖{number(parameter.grad.norm().item())}‖" in label
    assert not view.of_kind(NodeKind.LEAF)  # the weights are inside the box


def test_calls_of_different_structure_are_not_folded():
    torch.manual_seed(0)
    a, b = nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    x = torch.randn(2, 4)
    with graphscope.record() as session:
        for module in (a, b, a, b, a, b, a, b):
            x = module(x)
        x.sum().backward()
    view = readable(session[0], ViewOptions(budget=5))
    assert not any(n.name and n.name.startswith("×") for n in view.nodes)
    assert all("identical module calls" not in note for note in view.notes)


def test_module_boxes_list_their_parameters_with_the_norm_of_their_grad():
    torch.manual_seed(0)
    model = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True), 3,
                                  enable_nested_tensor=False)
    with graphscope.record() as session:
        model(torch.randn(2, 5, 16)).sum().backward()
    dot = to_dot(readable(session[0]))
    box = dot.split('"module:model.layers.1.linear1" [', 1)[1].split("];", 1)[0]
    weight = model.layers[1].linear1.weight
    assert f"weight (32, 16) .grad ‖{number(weight.grad.norm().item())}‖" in box
    assert f"bias (32,) .grad ‖{number(model.layers[1].linear1.bias.grad.norm().item())}‖" in box


def node_colours(svg: bytes) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """(fill, stroke) of each graph node and of each legend sample, by id, from an SVG."""
    graph, legend = {}, {}
    for g in ET.fromstring(svg).iter(f"{SVG}g"):
        if g.get("class") != "node":
            continue
        shape = next((e for e in g.iter() if e.tag in (f"{SVG}polygon", f"{SVG}path") and e.get("fill") != "none"),
                     None)
        if shape is None:
            continue
        (legend if g.get("id", "").startswith("legend_") else graph)[g.get("id")] = (shape.get("fill"), shape.get("stroke"))
    return graph, legend


def test_the_legend_shows_exactly_the_fills_and_borders_the_nodes_have():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    with graphscope.record(names={"w": w}) as session:
        for _ in range(2):
            (w * w).sum().backward()  # never zeroed: w.grad accumulates in step 1
    step = session[1]
    plain, _ = node_colours(to_svg(step))
    leaf = step.find("w")
    finding = Finding("grad-accumulation", "error", "w.grad accumulates", "zero it", "x.py:3", 1, (leaf.id,))
    svg = to_svg(step, findings=[finding])
    graph, legend = node_colours(svg)
    assert plain[leaf.id][1] == "#6a1b9a"  # purple without the finding...
    assert graph[leaf.id][1] == "#c62828"  # ...red with it, and the legend says red, not purple
    text = svg.decode()
    assert "the doctor&#39;s error&#10;(grad&#45;accumulation at x.py:3)" in text and "purple border" not in text
    fills = {fill for fill, _ in graph.values()}
    samples = {fill for fill, _ in legend.values()} - {"#ffffff"}
    assert fills == samples
    assert {stroke for _, stroke in graph.values()} <= {stroke for _, stroke in legend.values()}


def test_legend_lines_stack_at_the_top_right_of_a_tall_graph(unrolled):
    svg = to_svg(unrolled.snapshots[0])
    tops, lefts, graph_right = [], [], 0.0
    for g in ET.fromstring(svg).iter(f"{SVG}g"):
        if g.get("class") != "node":
            continue
        xs = [float(t.get("x")) for t in g.iter(f"{SVG}text")]
        if g.get("id", "").startswith("legend_"):
            tops.append(min(float(t.get("y")) for t in g.iter(f"{SVG}text")))
            lefts.append(min(xs))
        else:
            graph_right = max([graph_right, *xs])
    height = float(re.search(rb'height="([\d.]+)pt"', svg).group(1))
    # one rank of the graph and one of its edge labels between lines: tall nodes make it ~90 pt
    assert len(tops) >= 3 and max(b - a for a, b in zip(tops, tops[1:])) <= 100
    assert tops[-1] - tops[0] < height / 10 and tops[0] == min(tops) < -0.9 * height  # y grows down from -height
    assert min(lefts) > graph_right
    assert FILL_TEXT[NodeKind.LEAF] in svg.decode()


@needs_dot
def test_png_uses_the_system_engine_when_there_is_one(tmp_path):
    done = run_graphscope("render", str(EXAMPLES / "dot_product.py"), "-o", str(tmp_path), "--format", "png")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "step-0000.png").read_bytes().startswith(b"\x89PNG")


def test_the_summary_never_says_drew_for_a_picture_it_did_not_draw(tmp_path, monkeypatch, unrolled):
    import graphscope.renderers as renderers

    def refuse(*args, **kwargs):
        raise LayoutError("Graphviz layout took longer than 1 s and was stopped")

    monkeypatch.setattr(renderers, "layout", refuse)
    report = write_run(unrolled, tmp_path, ["svg"], report=False)
    text = summary(unrolled, report, tmp_path, ["svg"])
    assert "drew" not in text.split("not drawn:")[0]
    assert "chose every step (1); 1 picture(s) not drawn" in text
    assert "step-0000 (svg)" not in text


def test_the_summary_names_only_the_formats_it_wrote(tmp_path, monkeypatch, unrolled):
    import graphscope.renderers as renderers

    def refuse(*args, **kwargs):
        raise LayoutError("Graphviz layout took longer than 1 s and was stopped")

    monkeypatch.setattr(renderers, "layout", refuse)
    report = write_run(unrolled, tmp_path, ["dot", "svg"], report=False)
    text = summary(unrolled, report, tmp_path, ["dot", "svg"])
    assert (tmp_path / "step-0000.dot").exists() and not (tmp_path / "step-0000.svg").exists()
    assert "wrote step-0000 (dot), growth.svg" in text


def test_diff_of_two_large_steps_is_drawn_at_once(tmp_path):
    done = run_graphscope("render", str(EXAMPLES / "gru_language_model.py"), "-o", str(tmp_path / "run"),
                          "--format", "json", "--no-report")
    assert done.returncode == 1
    drawn = run_graphscope("diff", f"{tmp_path / 'run'}:0", f"{tmp_path / 'run'}:1", "-o", str(tmp_path / "d.svg"),
                           timeout=60)
    assert drawn.returncode == 0, drawn.stderr
    assert b"<svg" in (tmp_path / "d.svg").read_bytes()
