"""The HTML report: one self-contained page for a whole run, to open offline or keep as a CI artifact.

The page shows a timeline of the drawn steps, each step's graph with pan and zoom, the details of
the node under the mouse, what changed since the previous step, the growth chart and the doctor's
findings. It reaches nothing outside itself: script and style are inline, and a content security
policy allows only that script (by its hash) and no fetch at all, so even a string that slipped
past escaping could not run. Each step is an inert JSON block turned into a graph only when shown,
so a run of a hundred drawn steps opens as fast as one.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from graphscope.diff import diff
from graphscope.errors import LayoutError
from graphscope.files import write_atomic
from graphscope.growth import HEIGHT, MARGIN, WIDTH, growth_svg, is_growing
from graphscope.model import GradStat, Node, NodeKind, Snapshot, compact_json
from graphscope.renderers import labels, to_svg
from graphscope.renderers.dot import LEGEND
from graphscope.steps import select
from graphscope.store import Run
from graphscope.view import ViewOptions, readable

REPORT_FILE = "index.html"
NOTEBOOK_HEIGHT = 640
FINDING_FIELDS = ("rule", "severity", "message", "fix", "location", "step", "explains_failure")
KIND_TEXT = {key: text for key, text in LEGEND}
RETAINED_TEXT = KIND_TEXT.pop("retained")
_SVG_PROLOG = re.compile(r"\A.*?(?=<svg\b)", re.S)
_SVG_COMMENT = re.compile(r"<!--.*?-->", re.S)
_SVG_NAMESPACE = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')


def inline_svg(svg: str) -> str:
    """An SVG document as an element for an HTML page: no prolog, comments or namespace URLs."""
    element = _SVG_COMMENT.sub("", _SVG_PROLOG.sub("", svg, count=1))
    head, rest = element.split(">", 1)
    return _SVG_NAMESPACE.sub("", head) + ">" + rest.strip() + "\n"


def json_block(element_id: str, data: Any) -> str:
    """Inert `<script type="application/json">`; `<`, `>` and `&` escaped so no text can close it."""
    text = compact_json(data)
    text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _kind_text(node: Node) -> str:
    """What the node is, in the legend's words."""
    if node.kind is NodeKind.TENSOR and node.retains_grad:
        return RETAINED_TEXT
    return KIND_TEXT.get(node.kind, node.kind.value)


def _grad_rows(title: str, stat: GradStat | None) -> list[tuple[str, str]]:
    """A gradient as rows: its short value, then statistics and values when there is more than one."""
    if stat is None:
        return []
    rows = [(title, labels.grad_value(stat))]
    if stat.numel > 1 or stat.nonfinite:
        rows.append((f"{title} statistics", labels.grad_details(stat)))
    return rows


def _flows(node: Node, snapshot: Snapshot) -> list[tuple[str, str]]:
    """The gradient that came back into this node along each of its outgoing edges."""
    return [(f"gradient from {snapshot[e.target].title}", labels.grad_value(e.grad))
            for e in snapshot.edges if e.source == node.id and e.grad is not None]


def _first_step_text(node: Node, step: int) -> str | None:
    """`2 (carried over: history kept from an earlier step)` or just the step."""
    if node.first_step is None:
        return None
    if node.carried_over(step):
        return f"{node.first_step} (carried over: history kept from an earlier step)"
    return str(node.first_step)


def node_rows(node: Node, snapshot: Snapshot) -> list[tuple[str, str]]:
    """Everything known about a node as (label, text) rows, in the order a reader asks."""
    tensor = node.kind is not NodeKind.FUNCTION
    rows = [("kind", _kind_text(node)), ("name", node.name), ("op", node.op)]
    if tensor:
        rows += [("shape", labels.shape(node.shape)), ("dtype", node.dtype), ("device", node.device),
                 ("is_leaf", node.is_leaf), ("requires_grad", node.requires_grad),
                 ("retains_grad", node.retains_grad)]
    rows += _grad_rows(".grad", node.grad) + _grad_rows("gradient this step", node.grad_step)
    if labels.accumulated(node, snapshot.call):
        rows.append(("warning", ".grad was not zeroed: it holds more than this step's gradient"))
    rows += _flows(node, snapshot)
    rows += [("module", getattr(node, "module", None)), ("ops folded in", getattr(node, "folded", None)),
             ("source line", node.source), ("first step", _first_step_text(node, snapshot.step)),
             ("saved tensors", "freed by an earlier backward" if node.saved_freed else None), ("id", node.id)]
    return [(label, str(value)) for label, value in rows if value is not None]


def _node_data(node: Node, snapshot: Snapshot) -> dict[str, Any]:
    """Title and detail rows of one node, as the page shows them."""
    return {"title": node.title, "rows": node_rows(node, snapshot)}


def _described(node: Node) -> list[str]:
    """[id, `SubBackward0 @ train.py:30`]: a node in a list of changes."""
    return [node.id, node.title + (f" @ {node.source}" if node.source else "")]


def changes(views: Mapping[int, Snapshot], position: int) -> dict[str, Any] | None:
    """What changed since the step before, as drawn, for the diff view; None for the first step."""
    if position == 0:
        return None
    change = diff(views[position - 1], views[position])
    old, new = change.old, change.new
    return {
        "from": old.step, "added": [_described(new[i]) for i in change.added],
        "carried": [_described(new[i]) for i in change.carried],
        "removed": [_described(old[i])[1] for i in change.removed],
        "kinds": [f"{c.name}: {c.before} → {c.after}" for c in change.kind_changes],
    }


def step_payload(views: Mapping[int, Snapshot], position: int, svg: bytes) -> dict[str, Any]:
    """One drawn step: its graph, the details of each node drawn and the changes since the step before."""
    shown = views[position]
    return {
        "svg": inline_svg(svg.decode("utf-8")),
        "nodes": {node.id: _node_data(node, shown) for node in shown.nodes},
        "changes": changes(views, position),
    }


def _plain(value: Any) -> Any:
    """A finding field as JSON: text, numbers, flags and None as they are, anything else as text."""
    return value if value is None or isinstance(value, (str, int, float)) else str(value)


def _node_refs(shown: Snapshot, refs: Sequence[Any]) -> list[str]:
    """The ids of the drawn nodes a finding names, by id or by the user's name."""
    wanted = {str(r) for r in refs}
    return [n.id for n in shown.nodes if n.id in wanted or n.name in wanted]


def _finding_target(views: Mapping[int, Snapshot], drawn: Sequence[int], finding: Any) -> dict[str, Any] | None:
    """The drawn step (timeline index) and node ids a finding links to: its own step, else
    the first drawn step showing its nodes; None when neither is drawn."""
    step, refs = getattr(finding, "step", None), getattr(finding, "nodes", None) or ()
    candidates = [k for k, pos in enumerate(drawn) if step is None or views[pos].step == step]
    for k in candidates:
        ids = _node_refs(views[drawn[k]], refs)
        if ids:
            return {"index": k, "nodes": ids}
    return {"index": candidates[0], "nodes": []} if candidates and step is not None else None


def finding_data(views: Mapping[int, Snapshot], drawn: Sequence[int], finding: Any) -> dict[str, Any]:
    """One finding's fields by name, and where on the timeline it points."""
    data = {name: _plain(getattr(finding, name, None)) for name in FINDING_FIELDS}
    data["nodes"] = [str(n) for n in getattr(finding, "nodes", None) or ()]
    data["target"] = _finding_target(views, drawn, finding)
    return data


def _step_info(run: Run, position: int) -> dict[str, Any]:
    """What the timeline says about a drawn step."""
    snapshot = run.snapshots[position]
    span = max(len(run.snapshots) - 1, 1)
    return {"step": snapshot.step, "call": snapshot.call, "nodes": len(snapshot.nodes),
            "notes": list(snapshot.notes), "x": MARGIN + (WIDTH - 2 * MARGIN) * position / span}


def _summary(run: Run) -> str:
    """One sentence about the whole run."""
    calls = ", ".join(sorted({s.call for s in run.snapshots}))
    text = f"{len(run.snapshots)} step(s) captured ({calls})" if run.snapshots else "no step captured"
    if run.status:
        text += f"; the script stopped with exit status {run.status}"
    rows = run.growth()
    if is_growing(rows):
        text += f"; the graph grows: step {rows[-1].step} carries {rows[-1].carried} node(s) over from earlier steps"
    findings = getattr(run, "findings", ())
    if findings:
        text += f"; the doctor has {len(findings)} finding(s), listed on the right"
    return text


def page_data(run: Run, views: Mapping[int, Snapshot], drawn: Sequence[int], note: str) -> dict[str, Any]:
    """Everything the page needs up front, without the steps themselves."""
    findings = getattr(run, "findings", ())
    return {
        "title": run.script or "autograd graph",
        "summary": _summary(run),
        "captured": len(run.snapshots),
        "note": note,
        "steps": [_step_info(run, pos) for pos in drawn],
        "findings": [finding_data(views, drawn, f) for f in findings],
        "chart": {"top": MARGIN, "bottom": HEIGHT - MARGIN},
    }


def drawn_views(run: Run, drawn: Iterable[int], view: ViewOptions = ViewOptions()) -> dict[int, Snapshot]:
    """The graph each drawn step shows (large ones summarised), and the step before each, to compare."""
    positions = sorted({p for pos in drawn for p in (pos - 1, pos) if p >= 0})
    return {pos: readable(run.snapshots[pos], view) for pos in positions}


def report_html(run: Run, svgs: Mapping[int, bytes], note: str = "", view: ViewOptions = ViewOptions()) -> str:
    """The whole page for a run; `svgs` maps the position of each drawn step to its SVG, drawn in `view`."""
    drawn = sorted(svgs)
    views = drawn_views(run, drawn, view)
    data = page_data(run, views, drawn, note)
    blocks = [json_block("gs-data", data)]
    blocks += [json_block(f"gs-step-{k}", step_payload(views, pos, svgs[pos])) for k, pos in enumerate(drawn)]
    rows = run.growth()
    chart = inline_svg(growth_svg(rows)) if len(rows) > 1 else ""
    return PAGE.format(
        csp=_csp(), title=html.escape(f"graphscope · {data['title']}"), heading=html.escape(data["title"]),
        style=CSS, script=SCRIPT, chart=chart, data="\n".join(blocks),
    )


def _csp() -> str:
    """The content security policy: this page's own script and style, nothing from anywhere."""
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")
    return f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; base-uri 'none'"


def layout_steps(run: Run, positions: Iterable[int], engine: str = "embedded",
                 progress: Callable[[int, int], None] | None = None,
                 view: ViewOptions = ViewOptions(), not_drawn: list[str] | None = None) -> dict[int, bytes]:
    """SVG of each chosen step, keyed by position in the run, badged with the run's findings.
    With a `not_drawn` list, a step Graphviz cannot lay out is left out and said there."""
    positions = list(positions)
    svgs = {}
    for done, pos in enumerate(positions, 1):
        snapshot = run.snapshots[pos]
        try:
            svgs[pos] = to_svg(snapshot, engine, view=view, findings=getattr(run, "findings", ()))
        except LayoutError as exc:
            if not_drawn is None:
                raise
            not_drawn.append(f"step {snapshot.step} in the report: {exc}")
        if progress:
            progress(done, len(positions))
    return svgs


def write_report(run: Run, path: Path, svgs: Mapping[int, bytes], note: str = "",
                 view: ViewOptions = ViewOptions()) -> Path:
    """Write the report page atomically."""
    return write_atomic(path, report_html(run, svgs, note, view).encode("utf-8"))


def notebook_html(snapshots: Sequence[Snapshot], steps: str = "auto", engine: str = "embedded") -> str:
    """The report in a sandboxed frame, for Jupyter; the page runs isolated from the notebook."""
    if not snapshots:
        return "<p>graphscope: no backward or autograd.grad call captured yet</p>"
    run = Run(list(snapshots))
    selection = select(steps, run.snapshots)
    page = report_html(run, layout_steps(run, selection.steps, engine), selection.reason)
    return (f'<iframe sandbox="allow-scripts" style="width:100%;height:{NOTEBOOK_HEIGHT}px;'
            f'border:1px solid #ddd" srcdoc="{html.escape(page, quote=True)}"></iframe>')


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<header>
  <h1><span class="gs-brand">graphscope</span> {heading}</h1>
  <p id="gs-summary"></p>
  <p id="gs-selection" class="gs-hint"></p>
  <p class="gs-hint">Each step is one backward() or autograd.grad() call. Move through the steps with
  the slider or the ← → keys; hover over a box to see what it is and the gradient it received (click
  to keep it); scroll to zoom, drag to move the graph.</p>
</header>
<nav id="gs-timeline" aria-label="timeline">
  <button id="gs-prev" type="button" title="previous step (←)">◀ previous</button>
  <input id="gs-slider" type="range" min="0" max="0" value="0" aria-label="step">
  <button id="gs-next" type="button" title="next step (→)">next ▶</button>
  <span id="gs-step-label"></span>
  <span id="gs-note"></span>
</nav>
<main>
  <section id="gs-left">
    <div id="gs-toolbar">
      <button id="gs-view-graph" type="button" class="gs-on">Graph</button>
      <button id="gs-view-changes" type="button">Changes since previous step</button>
      <span class="gs-spacer"></span>
      <button id="gs-zoom-in" type="button" title="zoom in (+)">+</button>
      <button id="gs-zoom-out" type="button" title="zoom out (-)">−</button>
      <button id="gs-fit" type="button" title="fit the graph (0)">fit</button>
    </div>
    <div id="gs-notes"></div>
    <div id="gs-graph" tabindex="0" aria-label="graph"></div>
  </section>
  <aside>
    <section class="gs-card"><h2>Details</h2><div id="gs-details"></div></section>
    <section class="gs-card" id="gs-findings-card"><h2>Doctor's findings</h2><div id="gs-findings"></div></section>
    <section class="gs-card"><h2 id="gs-changes-title">Changes</h2><div id="gs-changes"></div></section>
    <section class="gs-card" id="gs-growth-card"><h2>Graph size per step</h2><div id="gs-growth">{chart}</div></section>
  </aside>
</main>
{data}
<script>{script}</script>
</body>
</html>
"""

CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#212121;
background:#fafafa;display:flex;flex-direction:column;height:100vh}
header{padding:8px 16px 4px;background:#fff;border-bottom:1px solid #e0e0e0}
h1{font-size:18px;margin:0}
.gs-brand{color:#1565c0;margin-right:6px}
#gs-summary{margin:2px 0;color:#424242}
.gs-hint{margin:2px 0;color:#757575;font-size:12px}
nav{display:flex;align-items:center;gap:8px;padding:6px 16px;background:#fff;border-bottom:1px solid #e0e0e0}
#gs-slider{flex:1;max-width:520px}
#gs-step-label{font-weight:600;white-space:nowrap}
#gs-note{color:#757575;font-size:12px}
button{font:inherit;padding:3px 10px;border:1px solid #bdbdbd;border-radius:4px;background:#fff;cursor:pointer}
button:hover{background:#e3f2fd}
button:disabled{color:#bdbdbd;cursor:default;background:#fff}
button.gs-on{background:#1565c0;color:#fff;border-color:#1565c0}
main{flex:1;display:flex;min-height:0}
#gs-left{flex:1;display:flex;flex-direction:column;min-width:0}
#gs-toolbar{display:flex;gap:6px;padding:6px 12px;align-items:center}
.gs-spacer{flex:1}
#gs-notes{padding:0 12px;color:#c62828}
#gs-graph{flex:1;margin:0 12px 12px;background:#fff;border:1px solid #e0e0e0;border-radius:6px;overflow:hidden;
cursor:grab;touch-action:none;outline:none}
#gs-graph.gs-dragging{cursor:grabbing}
#gs-graph svg{width:100%;height:100%;display:block;user-select:none}
#gs-graph g.node{cursor:pointer}
#gs-graph g.node.gs-hover :is(polygon,path,ellipse){stroke-width:3}
#gs-graph g.node.gs-pinned :is(polygon,path,ellipse){stroke:#0d47a1;stroke-width:4}
#gs-graph g.node.gs-flagged :is(polygon,path,ellipse){stroke:#c62828;stroke-width:5}
.gs-changes g.node.gs-same,.gs-changes g.edge{opacity:.4}
.gs-changes g.node.gs-carried :is(polygon,path,ellipse){stroke:#d84315;stroke-width:5}
.gs-changes g.node.gs-added :is(polygon,path,ellipse){stroke:#2e7d32;stroke-width:5}
aside{width:380px;overflow-y:auto;padding:6px 12px 12px 0}
.gs-card{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:8px 10px;margin-bottom:10px}
.gs-card h2{font-size:13px;text-transform:uppercase;letter-spacing:.04em;color:#616161;margin:0 0 6px}
#gs-details h3{font-size:16px;margin:0 0 6px;display:flex;align-items:center;gap:6px;word-break:break-all}
.gs-chip{display:inline-block;width:14px;height:14px;border:1px solid #757575;border-radius:3px;flex:none}
#gs-details table{border-collapse:collapse;width:100%;font-size:13px}
#gs-details th{text-align:left;color:#616161;font-weight:normal;padding:2px 8px 2px 0;vertical-align:top;width:38%}
#gs-details td{padding:2px 0;word-break:break-word;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.gs-empty{color:#757575;margin:0}
#gs-changes ul,#gs-findings ul{margin:4px 0;padding-left:18px}
.gs-link{color:#0d47a1;cursor:pointer}
.gs-link:hover{text-decoration:underline}
.gs-added-text{color:#2e7d32}.gs-carried-text{color:#d84315}.gs-removed-text{color:#c62828}
.gs-finding{border-left:4px solid #1565c0;padding:4px 8px;margin:6px 0;background:#fafafa}
.gs-finding.gs-error{border-color:#c62828}.gs-finding.gs-warning{border-color:#ef6c00}
.gs-finding p{margin:2px 0}
.gs-badge{font-size:11px;font-weight:600;text-transform:uppercase;margin-right:6px}
.gs-fix{color:#2e7d32}
.gs-where{color:#757575;font-size:12px}
#gs-growth svg{width:100%;height:auto;cursor:pointer}
"""

SCRIPT = r"""
"use strict";
const data = JSON.parse(document.getElementById("gs-data").textContent);
const $ = (id) => document.getElementById(id);
const pane = $("gs-graph");
const loaded = new Map();
const LIST_LIMIT = 40;
let current = -1, pinned = null, mode = "graph", svg = null, home = null, view = null, drag = null;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function payload(k) {
  if (!loaded.has(k)) loaded.set(k, JSON.parse($("gs-step-" + k).textContent));
  return loaded.get(k);
}

function nodeElement(id) {
  return [...pane.querySelectorAll("g.node")].find((g) => g.id === id) || null;
}

function show(k) {
  if (!data.steps.length) return;
  k = Math.max(0, Math.min(data.steps.length - 1, k));
  const info = data.steps[k], step = payload(k);
  current = k;
  pane.innerHTML = step.svg;  // Graphviz output: every name in it is escaped
  svg = pane.querySelector("svg");
  svg.removeAttribute("width");
  svg.removeAttribute("height");
  home = svg.getAttribute("viewBox").split(/[\s,]+/).map(Number);
  view = home.slice();
  for (const g of pane.querySelectorAll("g.node")) if (step.nodes[g.id]) g.classList.add("gs-node");
  $("gs-slider").value = String(k);
  $("gs-prev").disabled = k === 0;
  $("gs-next").disabled = k === data.steps.length - 1;
  $("gs-step-label").textContent = "step " + info.step + " · " + info.call + " · " + info.nodes + " nodes";
  $("gs-note").textContent = "(" + (k + 1) + " of " + data.steps.length + " drawn)";
  $("gs-notes").replaceChildren(...info.notes.map((n) => el("div", "note: " + n)));
  markChart(info);
  renderChanges(step.changes);
  setMode(mode);
  const keep = pinned && step.nodes[pinned] ? pinned : null;
  pinned = null;
  if (keep) pin(keep); else details(null);
}

function details(id) {
  const box = $("gs-details");
  if (id === null) {
    box.replaceChildren(el("p", "Hover over a box in the graph to see what it is and the gradient it received. Click a box to keep it here.", "gs-empty"));
    return;
  }
  const node = payload(current).nodes[id];
  const head = el("h3");
  const chip = el("span", null, "gs-chip");
  const shape = nodeElement(id).querySelector("polygon,path,ellipse");
  chip.style.background = shape ? shape.getAttribute("fill") : "none";
  head.append(chip, el("span", node.title));
  const table = el("table");
  for (const [label, text] of node.rows) {
    const tr = el("tr");
    tr.append(el("th", label), el("td", text));
    table.append(tr);
  }
  box.replaceChildren(head, table);
}

function hover(id) {
  for (const g of pane.querySelectorAll("g.gs-hover")) g.classList.remove("gs-hover");
  if (id === null) return;
  nodeElement(id).classList.add("gs-hover");
  if (pinned === null) details(id);
}

function pin(id) {
  for (const g of pane.querySelectorAll("g.gs-pinned")) g.classList.remove("gs-pinned");
  pinned = id;
  if (id !== null) nodeElement(id).classList.add("gs-pinned");
  details(id);
}

function renderChanges(change) {
  const box = $("gs-changes");
  $("gs-view-changes").disabled = change === null;
  if (change === null) {
    $("gs-changes-title").textContent = "Changes";
    $("gs-view-changes").textContent = "Changes since previous step";
    box.replaceChildren(el("p", "This is the first captured step: there is nothing before it to compare with.", "gs-empty"));
    return;
  }
  $("gs-changes-title").textContent = "Changes since step " + change.from;
  $("gs-view-changes").textContent = "Changes since step " + change.from;
  const parts = [];
  const summary = change.added.length + " new, " + change.removed.length + " removed, " +
    change.carried.length + " carried over from earlier steps";
  parts.push(el("p", summary));
  const list = (title, cls, items) => {
    if (!items.length) return;
    parts.push(el("div", title, cls));
    const ul = el("ul");
    for (const item of items.slice(0, LIST_LIMIT)) ul.append(Array.isArray(item) ? nodeLink(item) : el("li", item));
    if (items.length > LIST_LIMIT) ul.append(el("li", "… and " + (items.length - LIST_LIMIT) + " more"));
    parts.push(ul);
  };
  list("new in this graph (green border)", "gs-added-text", change.added);
  list("carried over (orange border): made in an earlier step, still in this graph", "gs-carried-text", change.carried);
  list("removed since step " + change.from, "gs-removed-text", change.removed);
  list("tensors that changed kind", "", change.kinds);
  if (!change.added.length && !change.removed.length && !change.kinds.length) parts.push(el("p", "Same structure as the step before.", "gs-empty"));
  box.replaceChildren(...parts);
}

function nodeLink([id, text]) {
  const item = el("li", text, "gs-link");
  item.title = "show it in the graph";
  item.addEventListener("click", () => { pin(id); centerOn(id); });
  return item;
}

function setMode(next) {
  const change = current >= 0 ? payload(current).changes : null;
  mode = change === null ? "graph" : next;
  $("gs-view-graph").classList.toggle("gs-on", mode === "graph");
  $("gs-view-changes").classList.toggle("gs-on", mode === "changes");
  pane.classList.toggle("gs-changes", mode === "changes");
  const ids = (items) => new Set(items.map(([id]) => id));
  const added = ids(change ? change.added : []), carried = ids(change ? change.carried : []);
  for (const g of pane.querySelectorAll("g.gs-node")) {
    g.classList.toggle("gs-added", added.has(g.id));
    g.classList.toggle("gs-carried", carried.has(g.id));
    g.classList.toggle("gs-same", !added.has(g.id) && !carried.has(g.id));
  }
}

function applyView() {
  svg.setAttribute("viewBox", view.join(" "));
}

function toGraph(clientX, clientY) {
  const point = new DOMPoint(clientX, clientY).matrixTransform(svg.getScreenCTM().inverse());
  return [point.x, point.y];
}

function zoom(factor, clientX, clientY) {
  if (!svg) return;
  const box = pane.getBoundingClientRect();
  const [px, py] = toGraph(clientX ?? box.left + box.width / 2, clientY ?? box.top + box.height / 2);
  const width = Math.min(Math.max(view[2] * factor, home[2] / 40), home[2] * 4);
  const scale = width / view[2];
  view = [px - (px - view[0]) * scale, py - (py - view[1]) * scale, view[2] * scale, view[3] * scale];
  applyView();
}

function fit() {
  if (!svg) return;
  view = home.slice();
  applyView();
}

function centerOn(id) {
  const box = nodeElement(id).getBBox();
  const ctm = nodeElement(id).getCTM(), root = svg.getCTM();
  const m = root.inverse().multiply(ctm);
  const c = new DOMPoint(box.x + box.width / 2, box.y + box.height / 2).matrixTransform(m);
  view = [c.x - view[2] / 2, c.y - view[3] / 2, view[2], view[3]];
  applyView();
}

function markChart(info) {
  const chart = $("gs-growth").querySelector("svg");
  if (!chart) { $("gs-growth-card").hidden = true; return; }
  let line = chart.querySelector("#gs-marker");
  if (!line) {
    line = document.createElementNS(chart.namespaceURI, "line");
    line.id = "gs-marker";
    line.setAttribute("stroke", "#212121");
    line.setAttribute("stroke-dasharray", "4 3");
    line.setAttribute("y1", data.chart.top);
    line.setAttribute("y2", data.chart.bottom);
    chart.append(line);
  }
  line.setAttribute("x1", info.x);
  line.setAttribute("x2", info.x);
}

function chartClick(event) {
  const chart = event.currentTarget;
  const point = new DOMPoint(event.clientX, event.clientY).matrixTransform(chart.getScreenCTM().inverse());
  let best = 0;
  data.steps.forEach((s, k) => { if (Math.abs(s.x - point.x) < Math.abs(data.steps[best].x - point.x)) best = k; });
  show(best);
}

function renderFindings() {
  const box = $("gs-findings");
  $("gs-findings-card").hidden = !data.findings.length;
  box.replaceChildren(...data.findings.map(renderFinding));
}

function renderFinding(f) {
  const card = el("div", null, "gs-finding gs-" + String(f.severity || "info").toLowerCase());
  const head = el("p");
  head.append(el("span", f.severity || "note", "gs-badge"), el("strong", f.rule));
  card.append(head, el("p", f.message));
  if (f.fix) card.append(el("p", "Fix: " + f.fix, "gs-fix"));
  const where = [f.location, f.step === null ? null : "step " + f.step].filter((x) => x !== null && x !== "");
  if (where.length) card.append(el("p", where.join(" · "), "gs-where"));
  if (f.target) {
    const go = el("button", "show in the graph of step " + data.steps[f.target.index].step);
    go.type = "button";
    go.addEventListener("click", () => reveal(f.target));
    card.append(go);
  }
  return card;
}

function reveal(target) {
  show(target.index);
  for (const id of target.nodes) nodeElement(id).classList.add("gs-flagged");
  if (target.nodes.length) { pin(target.nodes[0]); centerOn(target.nodes[0]); }
}

function graphNode(event) {
  const g = event.target.closest("g.gs-node");
  return g ? g.id : null;
}

pane.addEventListener("mouseover", (event) => hover(graphNode(event)));
pane.addEventListener("click", (event) => {
  if (drag && drag.moved) return;
  const id = graphNode(event);
  pin(id !== null && id !== pinned ? id : null);
});
pane.addEventListener("wheel", (event) => {
  event.preventDefault();
  zoom(Math.exp(event.deltaY * 0.0015), event.clientX, event.clientY);
}, {passive: false});
pane.addEventListener("pointerdown", (event) => {
  if (!svg) return;
  drag = {x: event.clientX, y: event.clientY, view: view.slice(), scale: svg.getScreenCTM().a, moved: false};
});
window.addEventListener("pointermove", (event) => {
  if (!drag || event.buttons !== 1) return;
  const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
  if (!drag.moved && Math.hypot(dx, dy) < 4) return;
  drag.moved = true;
  pane.classList.add("gs-dragging");
  view = [drag.view[0] - dx / drag.scale, drag.view[1] - dy / drag.scale, view[2], view[3]];
  applyView();
});
window.addEventListener("pointerup", () => {
  pane.classList.remove("gs-dragging");
  setTimeout(() => { drag = null; }, 0);
});
$("gs-prev").addEventListener("click", () => show(current - 1));
$("gs-next").addEventListener("click", () => show(current + 1));
$("gs-slider").addEventListener("input", (event) => show(Number(event.target.value)));
$("gs-view-graph").addEventListener("click", () => setMode("graph"));
$("gs-view-changes").addEventListener("click", () => setMode("changes"));
$("gs-zoom-in").addEventListener("click", () => zoom(1 / 1.25));
$("gs-zoom-out").addEventListener("click", () => zoom(1.25));
$("gs-fit").addEventListener("click", fit);
document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "INPUT" || event.altKey || event.ctrlKey || event.metaKey) return;
  const keys = {ArrowLeft: () => show(current - 1), ArrowRight: () => show(current + 1),
    Home: () => show(0), End: () => show(data.steps.length - 1), Escape: () => pin(null),
    "+": () => zoom(1 / 1.25), "=": () => zoom(1 / 1.25), "-": () => zoom(1.25), "0": fit};
  if (keys[event.key]) { event.preventDefault(); keys[event.key](); }
});

$("gs-summary").textContent = data.summary;
$("gs-slider").max = String(Math.max(data.steps.length - 1, 0));
$("gs-selection").textContent = data.note;
const chart = $("gs-growth").querySelector("svg");
if (chart) chart.addEventListener("click", chartClick);
renderFindings();
function showNothing() {
  for (const id of ["gs-prev", "gs-next", "gs-slider", "gs-view-changes"]) $(id).disabled = true;
  pane.replaceChildren(el("p", data.captured
    ? "No step was drawn (" + data.note + "); session.json holds every captured step."
    : "Nothing was captured: the script made no backward() or autograd.grad() call.", "gs-empty"));
}

if (data.steps.length) show(0);
else showNothing();
document.documentElement.dataset.ready = "true";
"""
