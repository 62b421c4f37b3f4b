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
import functools
import hashlib
import html
import re
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from graphscope.analysis.diff import diff
from graphscope.analysis.growth import growth, is_growing
from graphscope.analysis.view import ViewOptions, readable
from graphscope.errors import LayoutError
from graphscope.files import write_atomic
from graphscope.model import Finding, GradStat, Node, NodeKind, Run, Snapshot, accumulated, compact_json
from graphscope.renderers import labels, to_svg
from graphscope.renderers.styles import FILL_TEXT
from graphscope.renderers.growth import HEIGHT, MARGIN, WIDTH, growth_svg

REPORT_FILE = "index.html"
FINDING_FIELDS = ("rule", "severity", "message", "fix", "location", "step", "explains_failure")
RETAINED_TEXT = FILL_TEXT["retained"]
_SVG_PROLOG = re.compile(r"\A.*?(?=<svg\b)", re.S)
_SVG_COMMENT = re.compile(r"<!--.*?-->", re.S)
_SVG_NAMESPACE = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')


@functools.cache
def asset(name: str) -> str:
    """The text of one of the page's files (page.html, report.css, report.js), package data."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


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
    return FILL_TEXT.get(node.kind, node.kind.value)


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
            for e in snapshot.edges_out(node.id) if e.grad is not None]


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
    if accumulated(node, snapshot.call):
        rows.append(("warning", ".grad was not zeroed: it holds more than this step's gradient"))
    rows += _flows(node, snapshot)
    rows += [("module", node.module), ("ops folded in", node.folded),
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
        "from": old.step,
        "added": [_described(new[i]) for i in change.added]
        + [[m.new, f"{m.name}: now a new tensor, made at {new[m.new].source or 'an unknown line'}"]
           for m in change.moved],
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


def _node_refs(shown: Snapshot, refs: Sequence[Any]) -> list[str]:
    """The ids of the drawn nodes a finding names, by id or by the user's name."""
    wanted = {str(r) for r in refs}
    return [n.id for n in shown.nodes if n.id in wanted or n.name in wanted]


def _finding_target(views: Mapping[int, Snapshot], drawn: Sequence[int], finding: Finding) -> dict[str, Any] | None:
    """The drawn step (timeline index) and node ids a finding links to: its own step, else
    the first drawn step showing its nodes; None when neither is drawn."""
    step, refs = finding.step, finding.nodes
    candidates = [k for k, pos in enumerate(drawn) if step is None or views[pos].step == step]
    for k in candidates:
        ids = _node_refs(views[drawn[k]], refs)
        if ids:
            return {"index": k, "nodes": ids}
    return {"index": candidates[0], "nodes": []} if candidates and step is not None else None


def finding_data(views: Mapping[int, Snapshot], drawn: Sequence[int], finding: Finding) -> dict[str, Any]:
    """One finding's fields by name, and where on the timeline it points."""
    data: dict[str, Any] = {name: getattr(finding, name) for name in FINDING_FIELDS}
    data["nodes"] = [str(n) for n in finding.nodes]
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
    rows = growth(run.snapshots)
    if is_growing(rows):
        text += f"; the graph grows: step {rows[-1].step} carries {rows[-1].carried} node(s) over from earlier steps"
    findings = run.findings
    if findings:
        text += f"; the doctor has {len(findings)} finding(s), listed on the right"
    return text


def page_data(run: Run, views: Mapping[int, Snapshot], drawn: Sequence[int], note: str) -> dict[str, Any]:
    """Everything the page needs up front, without the steps themselves."""
    findings = run.findings
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
    rows = growth(run.snapshots)
    chart = inline_svg(growth_svg(rows)) if len(rows) > 1 else ""
    return asset("page.html").format(
        csp=_csp(), title=html.escape(f"graphscope · {data['title']}"), heading=html.escape(data["title"]),
        style=asset("report.css"), script=asset("report.js"), chart=chart, data="\n".join(blocks),
    )


def _csp() -> str:
    """The content security policy: this page's own script and style, nothing from anywhere."""
    digest = base64.b64encode(hashlib.sha256(asset("report.js").encode("utf-8")).digest()).decode("ascii")
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
            svgs[pos] = to_svg(snapshot, engine, view=view, findings=run.findings)
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
