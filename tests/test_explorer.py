"""The report's explorer, driven in headless Chromium as a user drives it: search, module
boxes that open in place and close, steps drawn on demand, the legend beside the graph."""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path

import pytest
import torch

import graphscope
from graphscope.analysis.growth import GrowthRow
from graphscope.numbers import number
from graphscope.renderers.growth import growth_svg
from graphscope.renderers import to_svg
from graphscope.report.builder import REPORT_FILE, report_html

from conftest import EXAMPLES, run_graphscope
from test_report import WAIT_DRAWN, Page, browser, needs_browser  # noqa: F401 - the fixture is used by name

SCRIPTS = Path(__file__).parent / "scripts"
NODES = "document.querySelectorAll('#gs-graph g.gs-node').length"


@pytest.fixture(scope="module")
def transformer_report(tmp_path_factory) -> Path:
    """The report of a 6-layer TransformerEncoder trained two steps, written by `graphscope render`."""
    out = tmp_path_factory.mktemp("transformer")
    done = run_graphscope("render", str(SCRIPTS / "transformer_training.py"), "-o", str(out))
    assert done.returncode == 0, done.stderr
    return out / REPORT_FILE


def trained_model():
    """The script's model after its two steps, run here with torch as the reference."""
    torch.set_num_threads(1)
    return runpy.run_path(str(SCRIPTS / "transformer_training.py"), run_name="reference")["model"]


def opened(browser, report: Path) -> Page:
    """A new tab showing a report, its script done."""
    page = Page(browser)
    page.open(report)
    return page


def open_box(page: Page, box: str) -> int:
    """Fit the picture, click a box as a mouse does, wait for the layout; how many nodes are drawn then."""
    page.key("0", 48)
    page.click(box)
    page.js(WAIT_DRAWN)
    return page.js(NODES)


def type_into_search(page: Page, text: str) -> None:
    """Focus the search box, type as a keyboard does, press Enter, wait for any layout."""
    page.js("document.querySelector('input[type=search]').focus()")
    page.call("Input.insertText", text=text)
    page.key("Enter", 13)
    page.js(WAIT_DRAWN)


@needs_browser
def test_search_finds_a_weight_inside_a_box_and_shows_its_grad(browser, transformer_report):
    page = opened(browser, transformer_report)
    page.key("End", 35)  # step 1: the .grad the script's model holds at the end
    page.js(WAIT_DRAWN)
    hidden = "document.querySelector('#gs-graph g[id=\"leaf_45\"]')"
    assert page.js(f"{hidden} === null")  # inside the box of layer 3's linear1, not drawn
    type_into_search(page, "encoder.layers.3.linear1.weight")
    shown = page.details()
    weight = trained_model().encoder.layers[3].linear1.weight
    assert shown["name"] == "model.encoder.layers.3.linear1.weight"
    assert shown[".grad"] == f"‖{number(weight.grad.norm().item())}‖"
    assert "model.encoder.layers.3.linear1.weight" in page.text("gs-details")
    assert page.js("document.querySelector('#gs-graph g.gs-pinned').id") == page.js(
        "[...document.querySelectorAll('#gs-graph g.node')].find((g) => g.classList.contains('gs-pinned')).id")
    assert page.problems() == []


@needs_browser
def test_module_boxes_open_in_place_and_close(browser, transformer_report):
    page = opened(browser, transformer_report)
    boxes = page.js("[...document.querySelectorAll('#gs-graph g.gs-node.gs-module')].map((g) => g.id)")
    assert "module:model.encoder.layers.3.linear1" in boxes
    before = page.js(NODES)
    first_notes = page.text("gs-notes")
    assert "drawn as" in first_notes and "inside" in first_notes  # what the first picture collapsed
    after = open_box(page, "module:model.encoder.layers.3.self_attn")
    assert after > before + 20  # its 31 ops, in its place
    notes = page.text("gs-notes")  # the first picture's notes no longer describe what is shown
    assert "drawn as" not in notes and "inside" not in notes
    assert f"view: as opened here, {after} nodes drawn of the step's" in notes
    assert page.js("document.querySelector('#gs-graph g[id=\"module:model.encoder.layers.3.self_attn\"]')") is None
    frame = page.js("(() => { const g = [...document.querySelectorAll('#gs-graph g.cluster')].find((c) => "
                    "c.querySelector('text').textContent === 'model.encoder.layers.3.self_attn'); "
                    "const r = g.querySelector('text').getBoundingClientRect(); return [r.x + 2, r.y + r.height / 2]; })()")
    page.mouse("mousePressed", *frame)
    page.mouse("mouseReleased", *frame)
    page.js(WAIT_DRAWN)
    assert page.js(NODES) == before
    assert open_box(page, "module:model.encoder.layers.3.self_attn") == after
    page.js("document.getElementById('gs-reset').click()")
    page.js(WAIT_DRAWN)
    assert page.js(NODES) == before
    assert page.text("gs-notes") == first_notes
    assert page.problems() == []


@needs_browser
def test_a_big_picture_opens_readable_from_its_top_left(browser, transformer_report):
    page = opened(browser, transformer_report)
    scale = "document.querySelector('#gs-graph svg').getScreenCTM().a"
    assert abs(page.js(scale) - 1) < 0.01 and page.view_box()[:2] == [0, 0]
    page.key("0", 48)
    assert page.js(scale) < 0.75  # fitted, its labels would be too small to read


@needs_browser
def test_the_legend_beside_the_graph_lists_what_the_view_shows(browser, transformer_report):
    page = opened(browser, transformer_report)
    legend = page.text("gs-legend")
    assert "one module call, collapsed" in legend and "leaf tensor" in legend
    assert "carried over" not in legend and "saved for backward" not in legend
    swatches = set(page.js("[...document.querySelectorAll('#gs-legend .gs-swatch')].map((s) => s.style.background)"))
    fills = set(page.js("[...document.querySelectorAll('#gs-graph g.gs-node')].map((g) => "
                        "getComputedStyle(g.querySelector('polygon,path')).fill)"))
    assert fills == swatches


STEADY = """import torch
torch.manual_seed(0)
model = torch.nn.Linear(3, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
x = torch.randn(8, 3)
for step in range(4):
    optimizer.zero_grad()
    model(x).pow(2).mean().backward()
    optimizer.step()
"""


@needs_browser
def test_the_legend_beside_a_step_without_edge_gradients_does_not_explain_edge_labels(browser, tmp_path):
    # a steady step records its leaves' gradients only: its edges carry no label to explain
    (tmp_path / "steady.py").write_text(STEADY)
    done = run_graphscope("render", str(tmp_path / "steady.py"), "-o", str(tmp_path / "out"), "--steps", "0")
    assert done.returncode == 0, done.stderr
    run = graphscope.load(tmp_path / "out" / "session.json")
    assert [s.gradients for s in run.snapshots] == ["full", "full", "full", "leaves"]
    page = opened(browser, tmp_path / "out" / REPORT_FILE)
    legends = []
    for _ in range(3):
        page.key("ArrowRight", 39)
        page.js(WAIT_DRAWN)
        legends.append(page.text("gs-legend"))
    edge_text = "[...document.querySelectorAll('#gs-graph g.edge text')].length"
    assert page.text("gs-step-label").startswith("step 3 ") and page.js(edge_text) == 0
    assert "edge label" in legends[1] and "edge label" not in legends[2]
    assert page.problems() == []


@needs_browser
def test_steps_not_drawn_in_advance_are_drawn_on_demand(browser, tmp_path):
    done = run_graphscope("render", str(SCRIPTS / "transformer_training.py"), "-o", str(tmp_path), "--steps", "0")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "step-0001.svg").exists()
    page = opened(browser, tmp_path / REPORT_FILE)
    page.key("ArrowRight", 39)
    page.js(WAIT_DRAWN)
    assert page.text("gs-step-label").startswith("step 1 · backward")
    assert page.text("gs-note") == "(2 of 2; drawn in your browser)"
    assert page.js(NODES) > 50 and page.js("document.querySelectorAll('#gs-graph g.gs-module').length") > 10
    assert page.problems() == []


def test_a_step_drawn_whole_carries_no_layout_engine(tmp_path):
    w = torch.ones(2, requires_grad=True)
    with graphscope.record(names={"w": w}) as session:
        (w * 3).sum().backward()
    page = report_html(graphscope.Run(session.snapshots), {0: to_svg(session[0])})
    assert 'id="gs-graphviz"' not in page and "wasm-unsafe-eval" not in page
    step = json.loads(re.search(r'id="gs-step-0">(.*?)</script>', page).group(1))
    assert "graph" not in step


def test_the_growth_chart_labels_steps_along_its_axis():
    rows = [GrowthRow(step, 10 + step, 9 + step, step, 2) for step in range(300)]
    svg = growth_svg(rows)
    labels = re.findall(r'text-anchor="middle">(\d+)</text>', svg)
    assert labels == ["0", "60", "120", "179", "239", "299"]


DEEP = """import torch
w = torch.ones(2, requires_grad=True)
for step in range(2):
    y = w
    for i in range(10 if step == 0 else 3000):
        y = y * 1.0001 if i % 2 else y + 0.001
    y.sum().backward()
"""


@needs_browser
def test_a_step_too_deep_for_the_browser_says_so_instead_of_showing_another(browser, tmp_path):
    (tmp_path / "deep.py").write_text(DEEP)
    done = run_graphscope("render", str(tmp_path / "deep.py"), "-o", str(tmp_path / "out"), "--steps", "0")
    assert done.returncode == 0, done.stderr
    page = opened(browser, tmp_path / "out" / REPORT_FILE)
    assert page.js(NODES) == 14  # step 0, drawn in advance
    page.key("ArrowRight", 39)
    page.js(WAIT_DRAWN)
    assert page.text("gs-step-label").startswith("step 1 ")
    assert page.js(NODES) == 0 and "Step 1 is too big to lay out in the browser (3004 nodes on 3004 ranks, 6007 with a rank for each row of edge labels; " in page.text("gs-graph")
    assert "session.json holds every node of it." in page.text("gs-graph")
    assert page.text("gs-note") == "(2 of 2; too big to draw here)"
    assert page.problems() == []


@needs_browser
def test_a_folded_chain_unfolds_when_clicked(browser, tmp_path):
    done = run_graphscope("render", str(EXAMPLES / "control_flow.py"), "--budget", "5", "-o", str(tmp_path))
    assert done.returncode == 0, done.stderr
    page = opened(browser, tmp_path / REPORT_FILE)
    folds = page.js("[...document.querySelectorAll('#gs-graph g.gs-fold')].map((g) => g.id)")
    assert len(folds) == 1 and page.js(NODES) == 3
    assert open_box(page, folds[0]) == 11  # the 9 MulBackward0 of the chain, drawn one by one
    assert page.js("document.querySelectorAll('#gs-graph g.gs-fold').length") == 0 and page.problems() == []
