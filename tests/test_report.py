"""The HTML report: built from the model, self-contained, and driven in a real headless Chromium."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
import os
import re
import runpy
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import graphscope
from graphscope.model import Finding
from graphscope.numbers import number
from graphscope.renderers import labels, to_svg
from graphscope.notebook import notebook_html
from graphscope.report.builder import REPORT_FILE, drawn_views, node_rows, page_data, report_html
from graphscope.analysis.steps import AUTO, select as choose_steps
from graphscope.model import Run

from conftest import EXAMPLES, run_graphscope

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("GRAPHSCOPE_REQUIRE_BROWSER"),
    reason="no chromium on PATH (CI sets GRAPHSCOPE_REQUIRE_BROWSER=1 to make this a failure)",
)
HOSTILE = '<script>document.title="pwned"</script><img src=x onerror="document.title=\'pwned\'">'
NETWORK = re.compile(r"(?i)\b(?:https?|ftp|wss?):|<link\b|<iframe\b|<object\b|<embed\b|@import|\bsrcset=|"
                     r"\bsrc=|url\(|//[a-z0-9-]+\.[a-z]{2,}")
WAIT_READY = ("new Promise((done) => { const poll = () => document.documentElement && "
              "document.documentElement.dataset.ready ? done(true) : setTimeout(poll, 10); poll(); })")
WAIT_DRAWN = ("new Promise((done) => { const poll = () => document.getElementById('gs-graph').dataset.drawing "
              "? setTimeout(poll, 10) : done(true); setTimeout(poll, 10); })")


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe: no port, no extra package."""

    def __init__(self, executable: str, profile: str):
        read_in, write_in = os.pipe()
        read_out, write_out = os.pipe()

        def attach_pipes() -> None:
            """Chromium reads commands on fd 3 and writes answers on fd 4."""
            inbound, outbound = os.dup(read_in), os.dup(write_out)
            os.dup2(inbound, 3)
            os.dup2(outbound, 4)

        self.process = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}",
             "--remote-debugging-pipe", "about:blank"],
            preexec_fn=attach_pipes, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(read_in)
        os.close(write_out)
        self.commands, self.answers = write_in, read_out
        self.pending, self.count, self.events = b"", 0, []

    def _message(self, deadline: float) -> dict[str, Any]:
        """The next message from Chromium, waiting at most until `deadline`."""
        while b"\0" not in self.pending:
            if not select.select([self.answers], [], [], max(deadline - time.monotonic(), 0))[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self.answers, 1 << 16)
            if not chunk:
                raise EOFError("Chromium closed the pipe")
            self.pending += chunk
        raw, self.pending = self.pending.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, session: str | None = None, timeout: float = 30, **params: Any) -> dict:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self.count += 1
        message = {"id": self.count, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self.commands, json.dumps(message).encode("utf-8") + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._message(deadline)
            if answer.get("id") == self.count:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]
            self.events.append(answer)

    def close(self) -> None:
        """Ask Chromium to quit, and make sure it did."""
        try:
            self.call("Browser.close", timeout=10)
        except (OSError, EOFError, TimeoutError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        os.close(self.commands)
        os.close(self.answers)


class Page:
    """One tab, offline, 1280x860, recording requests, console errors and dialogs."""

    def __init__(self, browser: Browser):
        self.browser = browser
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable")
        self.call("Network.emulateNetworkConditions", offline=True, latency=0, downloadThroughput=-1,
                  uploadThroughput=-1)
        self.call("Emulation.setDeviceMetricsOverride", width=1280, height=860, deviceScaleFactor=1, mobile=False)

    def open(self, path: Path) -> float:
        """Load a report and wait until its script is done; the seconds that took."""
        started = time.monotonic()
        self.call("Page.navigate", url=path.resolve().as_uri())
        self.js(WAIT_READY)
        return time.monotonic() - started

    def call(self, method: str, **params: Any) -> dict:
        """A command for this tab."""
        return self.browser.call(method, self.session, **params)

    def js(self, expression: str) -> Any:
        """Evaluate in the page (awaiting promises) and return the value."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def text(self, element_id: str) -> str:
        """The rendered text of an element."""
        return self.js(f"document.getElementById({json.dumps(element_id)}).innerText")

    def key(self, key: str, code: int) -> None:
        """Press and release a key, as a user does."""
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code)

    def node_center(self, node_id: str) -> tuple[float, float]:
        """Where a node of the shown graph is on the screen."""
        box = self.js(f"(() => {{ const g = [...document.querySelectorAll('#gs-graph g.node')]"
                      f".find((g) => g.id === {json.dumps(node_id)}); const r = g.getBoundingClientRect(); "
                      f"return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
        return box[0], box[1]

    def mouse(self, kind: str, x: float, y: float, **extra: Any) -> None:
        """A mouse event at a point (mouseMoved, mousePressed, mouseReleased, mouseWheel)."""
        if kind in ("mousePressed", "mouseReleased"):
            extra = {"button": "left", "clickCount": 1, **extra}
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, **extra)

    def view_box(self) -> list[float]:
        """The part of the graph in view: x, y, width, height in graph units."""
        return [float(v) for v in self.js("document.querySelector('#gs-graph svg').getAttribute('viewBox')").split()]

    def hover(self, node_id: str) -> dict[str, str]:
        """Move the mouse onto a node and read the details panel as {label: text}."""
        self.mouse("mouseMoved", *self.node_center(node_id))
        return self.details()

    def click(self, node_id: str) -> None:
        """Click a node."""
        x, y = self.node_center(node_id)
        self.mouse("mousePressed", x, y)
        self.mouse("mouseReleased", x, y)

    def details(self) -> dict[str, str]:
        """The rows of the details panel."""
        return dict(self.js("[...document.querySelectorAll('#gs-details tr')]"
                            ".map((tr) => [tr.cells[0].textContent, tr.cells[1].textContent])"))

    def screenshot(self) -> bytes:
        """A PNG of what is on the screen."""
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def problems(self) -> list[str]:
        """Requests that were not for the file itself, console errors, exceptions and dialogs."""
        found = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            method, params = event["method"], event["params"]
            if method == "Network.requestWillBeSent" and not params["request"]["url"].startswith("file:"):
                found.append(f"request {params['request']['url']}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"log {params['entry']['text']}")
            elif method in ("Runtime.exceptionThrown", "Page.javascriptDialogOpening"):
                found.append(f"{method} {params}")
        return found


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module's tests."""
    if CHROMIUM is None:
        pytest.fail("GRAPHSCOPE_REQUIRE_BROWSER is set but there is no chromium on PATH")
    with tempfile.TemporaryDirectory() as profile:
        chromium = Browser(CHROMIUM, profile)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def wrong_update_report(tmp_path_factory) -> Path:
    """The report of the wrong-update example, written by `graphscope render`."""
    out = tmp_path_factory.mktemp("wrong_update_retain")
    done = run_graphscope("render", str(EXAMPLES / "wrong_update_retain.py"), "-o", str(out))
    assert done.returncode == 0, done.stderr
    return out


def pixel_summary(browser: Browser, png: bytes) -> dict[str, Any]:
    """Size, share of non-white pixels and the colours counted in a PNG, decoded in a blank tab."""
    page = Page(browser)
    source = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return page.js(
        "new Promise((done) => { const image = new Image(); image.onload = () => {"
        " const canvas = document.createElement('canvas'); canvas.width = image.width; canvas.height = image.height;"
        " const context = canvas.getContext('2d'); context.drawImage(image, 0, 0);"
        " const pixels = context.getImageData(0, 0, image.width, image.height).data;"
        " const colors = new Map(); let white = 0;"
        " for (let i = 0; i < pixels.length; i += 4) {"
        "  const key = '#' + [0, 1, 2].map((c) => pixels[i + c].toString(16).padStart(2, '0')).join('');"
        "  colors.set(key, (colors.get(key) || 0) + 1); if (key === '#ffffff') white++; }"
        " done({width: image.width, height: image.height, distinct: colors.size,"
        "  nonwhite: 1 - white / (pixels.length / 4), counts: Object.fromEntries(colors)}); };"
        f" image.src = {json.dumps(source)}; }})"
    )


def sample_run(name: str = "w") -> Run:
    """A two-step run with gradients, captured by graphscope from torch."""
    w = torch.tensor([1.5], requires_grad=True)
    with graphscope.record(names={name: w}) as session:
        for _ in range(2):
            (w * w).sum().backward()
    return Run(session.snapshots, "sample.py", 0)


def report_of(run: Run) -> str:
    """The report of every step of a run."""
    return report_html(run, {i: to_svg(s) for i, s in enumerate(run.snapshots)})


def test_report_is_self_contained(wrong_update_report):
    page = (wrong_update_report / REPORT_FILE).read_text(encoding="utf-8")
    assert NETWORK.findall(page) == []
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1)
    assert f"script-src 'sha256-{digest}'" in policy and "default-src 'none'" in policy
    steps = re.findall(r'<script type="application/json" id="gs-step-(\d+)">', page)
    assert steps == ["0", "1", "2", "3", "4"]
    assert page.count("<svg") == 1  # the growth chart; step graphs stay inert JSON until shown


def test_network_check_catches_references():
    planted = ['<img src="a.png">', "<link rel=x>", "fetch('https://example.org')", "url(x.woff)",
               '<a href="//cdn.example.com/x.js">', "@import 'x.css'"]
    assert all(NETWORK.search(text) for text in planted)


def test_render_lists_the_report_and_no_report_skips_it(tmp_path):
    done = run_graphscope("render", str(EXAMPLES / "dot_product.py"), "-o", str(tmp_path / "a"))
    assert done.returncode == 0 and f"open {tmp_path / 'a' / REPORT_FILE} in a browser" in done.stderr
    skipped = run_graphscope("render", str(EXAMPLES / "dot_product.py"), "-o", str(tmp_path / "b"), "--no-report")
    assert skipped.returncode == 0 and not (tmp_path / "b" / REPORT_FILE).exists()
    assert REPORT_FILE not in skipped.stderr


def test_report_without_svg_format_lays_out_its_own_graphs(tmp_path):
    done = run_graphscope("render", str(EXAMPLES / "two_paths.py"), "-o", str(tmp_path), "--format", "json")
    assert done.returncode == 0, done.stderr
    page = (tmp_path / REPORT_FILE).read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.glob("*.svg")] == ["growth.svg"]
    assert len(re.findall(r'id="gs-step-\d+"', page)) == 2 and "\\u003csvg" in page


def test_node_rows_read_gradients_as_torch_computes_them():
    x = torch.arange(4.0, requires_grad=True)
    y = 2 * torch.dot(x, x)
    snapshot = graphscope.capture(y, names={"x": x})
    rows = dict(node_rows(snapshot.find("x"), snapshot))
    assert rows[".grad"] == "[" + ", ".join(number(v) for v in x.grad.tolist()) + "]"
    assert "norm " + number(x.grad.norm().item()) in rows[".grad statistics"]
    assert rows["kind"] == "leaf tensor: receives .grad" and rows["shape"] == "(4,)"
    assert rows["gradient from DotBackward0"] == rows[".grad"]


def test_hostile_names_are_escaped_in_the_page():
    page = report_of(sample_run(HOSTILE))
    assert HOSTILE not in page and "<img" not in page
    assert page.count("<script") == 1 + 1 + 2  # the page's own, the run data, one block per step
    step = json.loads(re.search(r'id="gs-step-0">(.*?)</script>', page).group(1))
    assert [node["title"] for node in step["nodes"].values()].count(HOSTILE) == 1


def finding(step: int | None, *nodes: str) -> Finding:
    """A finding about the leaf `w`."""
    return Finding("grad-accumulation", "warning", "w.grad accumulates", "call w.grad.zero_()", "sample.py:3",
                   step, nodes)


def test_findings_link_to_their_step_and_nodes():
    run = sample_run()
    run.findings = [finding(1, "w"), finding(None, "leaf_0"), finding(7, "w"), finding(0, "nobody")]
    data = page_data(run, drawn_views(run, [0, 1]), [0, 1], "")
    first, anywhere, undrawn, unknown = data["findings"]
    assert first["severity"] == "warning" and first["fix"] == "call w.grad.zero_()"
    assert first["target"] == {"index": 1, "nodes": ["leaf_0"]}
    assert anywhere["target"] == {"index": 0, "nodes": ["leaf_0"]}
    assert undrawn["target"] is None and unknown["target"] == {"index": 0, "nodes": []}
    fresh = sample_run()
    assert page_data(fresh, drawn_views(fresh, [0]), [0], "")["findings"] == []


def test_notebook_view_is_a_sandboxed_frame_holding_the_report():
    run = sample_run()
    frame = notebook_html(run.snapshots)
    assert frame.startswith('<iframe sandbox="allow-scripts"')
    page = html.unescape(re.search(r'srcdoc="([^"]*)"', frame).group(1))
    svgs = {i: to_svg(s) for i, s in enumerate(run.snapshots)}
    assert page == report_html(Run(run.snapshots), svgs, choose_steps(AUTO, run.snapshots).reason)
    snapshot = run.snapshots[0]
    assert snapshot._repr_html_() == notebook_html([snapshot])
    assert notebook_html([]) == "<p>graphscope: no backward or autograd.grad call captured yet</p>"


def test_session_displays_itself_in_jupyter():
    w = torch.tensor([2.0], requires_grad=True)
    with graphscope.record() as session:
        assert session._repr_svg_() is None
        (w * 3).sum().backward()
    assert session._repr_svg_() == to_svg(session[0]).decode("utf-8")
    assert session._repr_html_() == notebook_html(session.snapshots)


@needs_browser
def test_wrong_update_report_in_a_browser(browser, wrong_update_report, tmp_path):
    page = Page(browser)
    page.open(wrong_update_report / REPORT_FILE)
    run = graphscope.load(wrong_update_report)
    assert page.text("gs-step-label").startswith("step 0 · backward")
    assert page.text("gs-note") == f"(1 of {len(run)}; drawn by graphscope)"  # not "(1 of 5 drawn)": 5 were
    leaf = run[0].find("w")
    shown = page.hover(leaf.id)
    data = runpy.run_path(str(EXAMPLES / "wrong_update_retain.py"), run_name="reference")
    torch.manual_seed(2)
    w, b = torch.randn(1, requires_grad=True), torch.randn(1, requires_grad=True)
    torch.mean((data["x_train"] * w + b - data["y_train"]) ** 2).backward()
    assert shown["name"] == "w" and shown[".grad"] == f"[{number(w.grad.item())}]"
    for _ in range(4):
        page.key("ArrowRight", 39)
    assert page.text("gs-step-label") == f"step 4 · backward · {len(run[4])} nodes"
    retained = run[4].find("w")
    shown = page.hover(retained.id)
    assert shown[".grad"] == labels.grad_value(retained.grad) and shown["retains_grad"] == "True"
    assert shown["first step"] == "4" and shown["source line"] == "wrong_update_retain.py:36"
    page.js("document.getElementById('gs-view-changes').click()")
    changes = page.text("gs-changes")
    carried_over = len([n for n in run[4].nodes if n.carried_over(4)])
    assert f"4 new, 0 removed, {carried_over} carried over" in changes and carried_over == 8  # 2 updates, w, b
    carried = page.js("document.querySelectorAll('#gs-graph g.gs-carried').length")
    assert carried == len([n for n in run[4].nodes if n.carried_over(4)])
    page.key("ArrowLeft", 37)
    assert page.text("gs-step-label").startswith("step 3 ")
    page.key("ArrowRight", 39)
    page.js("document.getElementById('gs-view-graph').click()")
    home = page.view_box()
    page.mouse("mouseWheel", 450, 500, deltaX=0, deltaY=-400)
    zoomed = page.view_box()
    assert zoomed[2] < home[2] / 1.5
    page.mouse("mousePressed", 450, 500)
    page.mouse("mouseMoved", 550, 540, buttons=1)
    page.mouse("mouseReleased", 550, 540)
    moved = page.view_box()
    assert moved[0] < zoomed[0] and moved[1] < zoomed[1] and moved[2:] == zoomed[2:]  # dragged, same zoom
    page.key("0", 48)
    picture = (wrong_update_report / "step-0004.svg").read_text(encoding="utf-8")
    whole = [float(v) for v in re.search(r'viewBox="([^"]+)"', picture).group(1).split()]
    assert page.view_box() == whole  # fitted: the whole picture
    png = page.screenshot()
    (tmp_path / "wrong_update_retain.png").write_bytes(png)
    pixels = pixel_summary(browser, png)
    assert (pixels["width"], pixels["height"]) == (1280, 860)
    assert pixels["distinct"] > 100 and pixels["nonwhite"] > 0.1
    assert pixels["counts"].get("#c8e6c9", 0) > 200  # the green of leaf tensors, drawn
    assert pixels["counts"].get("#ffccbc", 0) > 200  # the orange of carried-over history
    assert page.problems() == []


@needs_browser
def test_hostile_names_stay_text_in_a_browser(browser, tmp_path):
    run = sample_run(HOSTILE)
    (tmp_path / REPORT_FILE).write_text(report_of(run), encoding="utf-8")
    page = Page(browser)
    page.open(tmp_path / REPORT_FILE)
    node = run[0].find(HOSTILE)
    page.click(node.id)
    assert page.details()["name"] == HOSTILE
    assert page.js("document.title") == "graphscope · sample.py"
    assert page.js("document.querySelectorAll('img').length") == 0
    assert page.js("document.querySelectorAll('script').length") == 4
    assert page.problems() == []


@needs_browser
def test_finding_link_shows_its_node(browser, tmp_path):
    run = sample_run()
    run.findings = [dataclasses.replace(finding(1, "w"), explains_failure=True)]
    (tmp_path / REPORT_FILE).write_text(report_of(run), encoding="utf-8")
    page = Page(browser)
    page.open(tmp_path / REPORT_FILE)
    assert "w.grad accumulates" in page.text("gs-findings") and "Fix: call w.grad.zero_()" in page.text("gs-findings")
    assert "why the script stopped" not in page.text("gs-findings")  # a finding's message says it when it does
    page.js("document.querySelector('#gs-findings button').click()")
    assert page.text("gs-step-label").startswith("step 1 ")
    assert page.details()["name"] == "w"
    assert page.js("[...document.querySelectorAll('#gs-graph g.gs-flagged')].map((g) => g.id)") == ["leaf_0"]
    assert page.problems() == []


@needs_browser
def test_steps_not_drawn_are_drawn_in_the_browser_and_an_empty_run_says_so(browser, tmp_path):
    run = sample_run()
    (tmp_path / REPORT_FILE).write_text(report_html(run, {}, "drew 0 of 2 step(s) (--steps 7)"), encoding="utf-8")
    page = Page(browser)
    page.open(tmp_path / REPORT_FILE)
    assert page.text("gs-selection") == "drew 0 of 2 step(s) (--steps 7)"
    assert page.text("gs-note") == "(1 of 2; drawn in your browser)"
    leaf = run[0].find("w")
    assert page.hover(leaf.id)[".grad"] == labels.grad_value(leaf.grad)
    page.key("ArrowRight", 39)
    page.js(WAIT_DRAWN)
    assert page.text("gs-step-label").startswith("step 1 ") and page.hover(leaf.id)["name"] == "w"
    (tmp_path / "empty.html").write_text(report_html(Run([]), {}), encoding="utf-8")
    page.open(tmp_path / "empty.html")
    assert page.text("gs-graph").startswith("Nothing was captured")
    assert page.js("['gs-prev', 'gs-next', 'gs-slider', 'gs-view-changes']"
                   ".every((id) => document.getElementById(id).disabled)") is True
    assert page.problems() == []


@needs_browser
def test_hundred_drawn_steps_open_quickly(browser, tmp_path):
    w = torch.ones(3, requires_grad=True)
    with graphscope.record() as session:
        for _ in range(3):
            torch.sigmoid(torch.tanh(w * 2) + w).sum().backward()
    snapshot = session[0]
    run = Run([snapshot.with_step(i) for i in range(100)], "many.py", 0)
    svg = to_svg(snapshot)
    page_text = report_html(run, dict.fromkeys(range(100), svg))
    (tmp_path / REPORT_FILE).write_text(page_text, encoding="utf-8")
    assert len(page_text.encode()) < 100 * 2 * len(svg)
    page = Page(browser)
    assert page.open(tmp_path / REPORT_FILE) < 5
    assert page.js("document.querySelectorAll('#gs-graph svg').length") == 1
    page.key("End", 35)
    assert page.text("gs-step-label").startswith("step 99 ")
    assert page.js("document.querySelectorAll('#gs-graph svg').length") == 1
    assert page.problems() == []


def on_a_terminal(*args: str, env: dict[str, str]) -> str:
    """Run `python -m graphscope ARGS` with stdout and stderr on a pseudo-terminal; what it printed."""
    leader, follower = os.openpty()
    process = subprocess.Popen([sys.executable, "-m", "graphscope", *args], stdout=follower, stderr=follower,
                               env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 1 << 16)
        except OSError:  # the terminal closes when the process ends
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(300) == 0
    return b"".join(chunks).decode("utf-8")


def visible_lines(output: str) -> list[str]:
    """What the terminal shows in the end: each line as left by carriage returns and line clears."""
    return [line.rstrip("\r").split("\r")[-1].replace("\x1b[K", "") for line in output.split("\n")]


SLOW_SCRIPT = """import time, torch
w = torch.ones(2, requires_grad=True)
for i in range(3):
    (w * i).sum().backward()
    print(f"iteration {i} done")
    time.sleep(0.5)
"""


def test_render_shows_progress_on_a_terminal(tmp_path):
    (tmp_path / "slow.py").write_text(SLOW_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    output = on_a_terminal("render", str(tmp_path / "slow.py"), "-o", str(tmp_path / "out"), env=env)
    assert re.search(r"\x1b\[Kgraphscope: captured [1-3] step\(s\)\r", output)
    assert "\x1b[Kgraphscope: drawing step 3/3" in output
    lines = visible_lines(output)
    assert [line for line in lines if line.startswith("iteration")] == [f"iteration {i} done" for i in range(3)]
    assert not any("drawing step" in line or re.match(r"graphscope: captured \d+ step\(s\)$", line) for line in lines)


def test_render_is_quiet_when_piped_or_in_ci(tmp_path):
    piped = run_graphscope("render", str(EXAMPLES / "dot_product.py"), "-o", str(tmp_path / "a"))
    assert piped.returncode == 0 and "\r" not in piped.stderr and "\x1b" not in piped.stderr
    output = on_a_terminal("render", str(EXAMPLES / "dot_product.py"), "-o", str(tmp_path / "b"),
                           env=dict(os.environ, CI="true"))
    assert "\x1b" not in output and "captured 1 step(s)" in output


@pytest.mark.parametrize("length", [3, 400])
def test_every_box_drawn_has_details(length):
    x = torch.ones(2, requires_grad=True)
    y = x
    for _ in range(length):
        y = y * 1.5
    run = Run([graphscope.capture(y.sum(), names={"x": x})])
    page = report_of(run)
    step = json.loads(re.search(r'id="gs-step-0">(.*?)</script>', page).group(1))
    drawn = {i for i in re.findall(r'<g id="([^"]+)" class="node">', html.unescape(step["svg"]))
             if not i.startswith("legend_")}
    assert drawn <= set(step["nodes"])
    assert (len(drawn) < length) == (length > 150) == ("graph" in step)  # a long chain is drawn folded...
    assert set(step["nodes"]) == drawn | ({n.id for n in run[0].nodes} if length > 150 else set())  # ...and opens
