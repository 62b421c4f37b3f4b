"""Across iterations: identity, carried-over history, sources, growth, diffs, step choice, saved runs."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import graphscope
from graphscope import GraphscopeError, NodeKind
from graphscope.analysis.diff import diff
from graphscope.analysis.growth import growth, is_growing
from graphscope.analysis.steps import StepSpec, select
from graphscope.capture.runner import record_script
from graphscope.doctor import diagnose
from graphscope.model import Run
from graphscope.store import load

from conftest import EXAMPLES, run_graphscope


def line_of(path: Path, text: str) -> int:
    """1-based number of the first line of `path` whose code starts with `text`."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip().startswith(text):
            return number
    raise AssertionError(f"{text!r} not in {path}")


def update_subs(snapshot, source: str) -> list:
    """SubBackward0 nodes created at one source line."""
    return [n for n in snapshot.nodes if n.op == "SubBackward0" and n.kind is NodeKind.FUNCTION
            and n.source == source]


def test_wrong_update_as_the_lesson_wrote_it(tmp_path):
    script = EXAMPLES / "wrong_update.py"
    done = run_graphscope("render", str(script), "-o", str(tmp_path), "--format", "json")
    assert done.returncode == 1 and "TypeError" in done.stderr
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-0000.json", "step-0001.json"]
    run = load(tmp_path)
    step1 = run[1]
    for name, line_text in (("w", "w = w - lr * w.grad"), ("b", "b = b - lr * b.grad")):
        node = step1.find(name)
        assert node.kind is NodeKind.TENSOR and node.is_leaf is False and node.op == "SubBackward0"
        producer = next(step1[e.source] for e in step1.edges if e.target == node.id)
        assert producer.op == "SubBackward0"
        assert producer.source == f"wrong_update.py:{line_of(script, line_text)}"
        leaf = next(n for n in step1.of_kind("leaf") if n.name and n.name.startswith(name + " "))
        assert leaf.first_step == 0
        graph = step1.graph
        import networkx as nx
        assert nx.has_path(graph, leaf.id, node.id)
    assert run[0].find("w").kind is NodeKind.LEAF


def test_retain_grad_variant_grows_every_step(tmp_path):
    script = EXAMPLES / "wrong_update_retain.py"
    session = record_script(str(script))
    assert session.status == 0 and len(session) == 5
    sources = {p: f"wrong_update_retain.py:{line_of(script, f'{p} = {p} - lr * {p}.grad')}" for p in "wb"}
    for k, snap in enumerate(session.snapshots):
        for param, source in sources.items():
            subs = update_subs(snap, source)
            assert len(subs) == k
            assert sum(n.first_step < k for n in subs) == max(k - 1, 0)
            assert all(n.carried_over(k) == (n.first_step < k) for n in subs)
    sizes = [len(s.nodes) for s in session.snapshots]
    assert sizes == sorted(set(sizes))
    rows = growth(session.snapshots)
    # the carried updates, and the tensors `w (from step k-1)` and `b (from step k-1)` where they enter
    assert [r.carried for r in rows] == [0, 0, 4, 6, 8]
    # the summary, the doctor and the report each ask for the rows of steps kept once read:
    # each step is counted once
    steps = session.snapshots.kept()
    first = growth(steps)
    assert first == rows and all(again is row for again, row in zip(growth(steps), first))


@pytest.mark.parametrize("script", ["linear_fit.py", "training_loop.py", "linear_model.py"])
def test_correct_loops_carry_nothing_and_keep_their_size(script):
    session = record_script(str(EXAMPLES / script))
    assert session.status == 0 and len(session) > 3
    rows = growth(session.snapshots)
    assert {r.carried for r in rows} == {0}
    assert len({(r.nodes, r.edges) for r in rows}) == 1
    assert all(diff(session[0], s).empty for s in session.snapshots[1:])


def test_rnn_hidden_state_carries_history_unless_detached():
    plain = record_script(str(EXAMPLES / "rnn_hidden_state.py"))
    detached = record_script(str(EXAMPLES / "rnn_hidden_state.py"), ["--detach"])
    carried = [r.carried for r in growth(plain.snapshots)]
    assert carried[0] == 0 and all(b > a for a, b in zip(carried, carried[1:]))
    assert {r.carried for r in growth(detached.snapshots)} == {0}


def test_names_follow_the_users_variables_each_step():
    with graphscope.record() as session:
        w = torch.tensor([1.0], requires_grad=True)
        for _ in range(2):
            loss = (w * 3).sum()
            loss.backward(retain_graph=True)
            w = w - 0.1 * w.grad
            w.retain_grad()
    assert session[0].find("w").kind is NodeKind.LEAF
    assert session[1].find("w").kind is NodeKind.TENSOR
    assert session[1].find("w (from step 0)").kind is NodeKind.LEAF


def test_api_sources_point_at_this_file():
    with graphscope.record() as session:
        x = torch.ones(2, requires_grad=True)
        y = (x * 2).sum()
        y.backward()
    mul = next(n for n in session[0].nodes if n.op == "MulBackward0")
    path, line = mul.source.rsplit(":", 1)
    assert path.endswith("test_steps.py") and not Path(path).is_absolute()
    assert int(line) == line_of(Path(__file__), "y = (x * 2).sum()")
    with graphscope.record(source=False) as quiet:
        (x * 2).sum().backward()
    assert all(n.source is None for n in quiet[0].nodes)


def test_a_node_made_where_stamping_cannot_see_gets_no_line_rather_than_the_next_one():
    """A custom autograd.Function's node is made without a torch call the stamping mode sees;
    the next op's line walks back past it, and must not claim it (it said line 26 for an
    op made at line 24 of the custom-function lesson)."""
    run = record_script(str(EXAMPLES / "custom_function.py"))
    custom = next(n for n in run[0].nodes if n.op == "ClampThroughBackward")
    clamp = next(n for n in run[0].nodes if n.op == "ClampBackward1")
    assert custom.source is None
    assert clamp.source == f"custom_function.py:{line_of(EXAMPLES / 'custom_function.py', 'clamped = torch.clamp(')}"


def test_sources_never_break_code_that_changes_a_no_grad_view_in_place():
    torch.manual_seed(0)
    with graphscope.record() as session:
        emb = nn.Embedding(5, 3, padding_idx=0)  # fills row 0 with zeros in place, under no_grad
        with torch.no_grad():
            row = emb.weight[1]
            row.fill_(0.5)
        same = row.contiguous()  # grad mode, and returns the changed view itself
        loss = emb(torch.tensor([0, 1, 2])).sum()
        loss.backward()
    assert same is row and emb.weight.grad.tolist() == [[0.0] * 3, [1.0] * 3, [1.0] * 3, [0.0] * 3, [0.0] * 3]
    lookup = next(n for n in session[0].nodes if n.op == "EmbeddingBackward0")
    assert lookup.source.endswith(f"test_steps.py:{line_of(Path(__file__), 'loss = emb(torch.tensor([0, 1, 2])).sum()')}")
    assert session[0].find("emb.weight").grad.values == tuple(emb.weight.grad.flatten().tolist())


def test_optimizer_steps_skip_source_tracking_but_closures_keep_it():
    modes: list[int] = []

    def probe(optimizer_class):
        """The optimizer, noting how many torch-function modes are active while it steps."""

        class Probe(optimizer_class):
            def step(self, closure=None):
                modes.append(len(torch.overrides._get_current_function_mode_stack()))
                return super().step(closure)

        return Probe

    torch.manual_seed(0)
    model, x = nn.Linear(3, 1), torch.randn(4, 3)
    sgd = probe(torch.optim.SGD)(model.parameters(), lr=0.1, momentum=0.9)
    lbfgs = probe(torch.optim.LBFGS)(model.parameters(), max_iter=2)

    def closure():
        lbfgs.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        return loss

    with graphscope.record() as session:
        model(x).sum().backward()
        sgd.step()
        lbfgs.step(closure)
        (model(x) * 2).sum().backward()
    assert modes == [0, 1]  # a plain step runs with the mode off; one with a closure keeps it
    closure_line = f"test_steps.py:{line_of(Path(__file__), 'loss = model(x).pow(2).mean()')}"
    assert len(session) == 4 and session[1].find("model.weight").kind is NodeKind.LEAF
    assert {n.source.rsplit("/", 1)[-1] for n in session[1].nodes if n.op == "PowBackward0"} == {closure_line}
    assert any(n.op == "MulBackward0" and n.source for n in session[3].nodes)  # back after the steps
    assert not torch.overrides._get_current_function_mode_stack()


def test_independent_forward_passes_match_node_for_node():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    first = graphscope.trace(model(torch.randn(3, 4)).sum(), names=model)
    second = graphscope.trace(model(torch.randn(3, 4)).sum(), names=model)
    change = diff(first, second)
    assert change.empty and len(change.common) == len(first.nodes)
    bigger = graphscope.trace(model(torch.randn(3, 4)).sum() * 2, names=model)
    change = diff(first, bigger)
    assert [bigger[i].op for i in change.added] == ["MulBackward0"]


def test_diff_command_between_steps(tmp_path):
    out = tmp_path / "run"
    run_graphscope("render", str(EXAMPLES / "wrong_update_retain.py"), "-o", str(out), "--format", "json")
    done = run_graphscope("diff", f"{out}:0", f"{out}:3", "-o", str(tmp_path / "diff.svg"))
    assert done.returncode == 0, done.stderr
    change = graphscope.diff(graphscope.load(out)[0], graphscope.load(out)[3])
    paired = set(change.matched.values())
    in_both = sum(node.id in paired for node in change.new.nodes)
    assert f"19 nodes): 10 added, 0 removed, 6 carried over, {in_both} in both" in done.stdout
    assert "w: leaf -> tensor (SubBackward0)" in done.stdout
    assert done.stdout.count("+ SubBackward0") == 6
    assert (tmp_path / "diff.svg").read_bytes().startswith(b"<?xml")
    by_file = run_graphscope("diff", str(out / "step-0000.json"), str(out / "step-0003.json"))
    assert by_file.stdout == done.stdout.replace(f"wrote {tmp_path / 'diff.svg'}\n", "")
    bad = run_graphscope("diff", f"{out}:0", f"{out}:99")
    assert bad.returncode == 2 and "has steps 0 to 4" in bad.stderr
    wrong_format = run_graphscope("diff", f"{out}:0", f"{out}:3", "-o", str(tmp_path / "diff.json"))
    assert wrong_format.returncode == 2 and "svg, png, pdf or dot" in wrong_format.stderr
    assert wrong_format.stdout == ""  # refused before any diff is printed
    empty, idle = tmp_path / "empty", tmp_path / "idle.py"
    idle.write_text("import torch\nprint(torch.ones(2) * 3)\n")
    run_graphscope("render", str(idle), "-o", str(empty), "--format", "json")
    nothing = run_graphscope("diff", f"{empty}:0", f"{out}:0")
    assert nothing.returncode == 2 and "holds no step" in nothing.stderr


def test_a_loop_that_repeats_its_sizes_does_not_grow_but_the_wrong_update_does():
    torch.manual_seed(0)
    critic = nn.Linear(2, 1)
    with graphscope.record() as penalty:
        for _ in range(3):  # a gradient penalty: autograd.grad with create_graph, then backward through it
            x = torch.randn(4, 2, requires_grad=True)
            (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
            (critic(x).mean() + grad.norm(dim=1).sub(1).pow(2).mean()).backward()
    rows = growth(penalty.snapshots)
    assert [r.nodes for r in rows[::2]] == [rows[0].nodes] * 3 and rows[-1].carried > 0
    assert not is_growing(rows)
    w = torch.ones(1, requires_grad=True)
    with graphscope.record() as wrong:
        for _ in range(4):
            (grad,) = torch.autograd.grad((w * 3).sum(), w)
            w = w - 0.1 * grad
    assert is_growing(growth(wrong.snapshots))


def test_growth_chart_and_session_are_written(tmp_path):
    done = run_graphscope("render", str(EXAMPLES / "wrong_update_retain.py"), "-o", str(tmp_path))
    assert done.returncode == 0
    assert "the graph grows" in done.stderr
    chart = (tmp_path / "growth.svg").read_text()
    assert chart.startswith("<svg") and "carried over" in chart
    run = load(tmp_path / "session.json")
    assert len(run) == 5 and run.script == "wrong_update_retain.py" and run.status == 0
    assert [r.nodes for r in growth(run.snapshots)] == sorted({r.nodes for r in growth(run.snapshots)})


def many_steps_script(tmp_path: Path, steps: int) -> Path:
    """A correct loop with `steps` backward calls; the last two steps change structure."""
    script = tmp_path / "many.py"
    script.write_text(
        "import torch\n"
        "w = torch.ones(3, requires_grad=True)\n"
        f"for i in range({steps}):\n"
        "    loss = (w * 2).sum() if i < %d else (w * 2 + 1).sum()\n"
        "    loss.backward()\n"
        "    with torch.no_grad():\n"
        "        w -= 0.01 * w.grad\n"
        "    w.grad = None\n" % (steps - 2)
    )
    return script


def test_default_selection_draws_a_few_steps_of_a_long_run(tmp_path):
    script = many_steps_script(tmp_path, 300)
    done = run_graphscope("render", str(script), "-o", str(tmp_path / "out"))
    assert done.returncode == 0
    drawn = sorted(p.name for p in (tmp_path / "out").glob("step-*.svg"))
    assert drawn == ["step-0000.svg", "step-0001.svg", "step-0002.svg", "step-0298.svg", "step-0299.svg"]
    assert "drew 5 of 300 step(s)" in done.stderr and "--steps all" in done.stderr
    assert len(load(tmp_path / "out")) == 300


@pytest.mark.parametrize("spec, expected", [
    ("0,1,2", [0, 1, 2]), ("-1", [9]), ("all", list(range(10))), ("every:4", [0, 4, 8]),
    ("every:4,-1", [0, 4, 8, 9]),
])
def test_step_specs(spec, expected):
    x = torch.ones(1, requires_grad=True)
    snaps = [graphscope.trace(x * 2).with_step(i) for i in range(10)]
    assert list(select(StepSpec.parse(spec), snaps).steps) == expected


@pytest.mark.parametrize("spec, message", [("every:0", "positive"), ("first", "use auto")])
def test_bad_step_specs(spec, message):
    x = torch.ones(1, requires_grad=True)
    snaps = [graphscope.trace(x * 2).with_step(i) for i in range(10)]
    with pytest.raises(GraphscopeError, match=message):
        select(StepSpec.parse(spec), snaps)


def test_steps_the_run_does_not_have_are_left_out_and_said():
    x = torch.ones(1, requires_grad=True)
    snaps = [graphscope.trace(x * 2).with_step(i) for i in range(10)]
    chosen = select(StepSpec.parse("1,12,-11,-1"), snaps)
    assert chosen.steps == (1, 9) and "the run has no step 12, -11: its steps are 0 to 9" in chosen.reason


def test_a_step_number_past_the_end_still_writes_the_run(tmp_path):
    done = run_graphscope("render", str(EXAMPLES / "two_paths.py"), "--steps", "7", "-o", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert len(load(tmp_path)) == 2 and not list(tmp_path.glob("step-*.svg"))
    assert "no step 7: its steps are 0 to 1" in done.stderr
    assert "wrote growth.svg and session.json" in done.stderr


def test_bad_steps_option_fails_before_running(tmp_path):
    done = run_graphscope("render", str(EXAMPLES / "dot_product.py"), "--steps", "every:x", "-o", str(tmp_path))
    assert done.returncode == 2 and "every:" in done.stderr and "x.grad" not in done.stdout


def test_saved_run_reloads_and_rerenders(tmp_path):
    session = record_script(str(EXAMPLES / "two_paths.py"))
    graphscope.save(session.snapshots, tmp_path / "session.json", script="two_paths.py")
    run = graphscope.load(tmp_path / "session.json")
    assert run.snapshots == session.snapshots
    live = graphscope.render(session[1], tmp_path / "live.svg").read_bytes()
    again = graphscope.render(run[1], tmp_path / "again.svg").read_bytes()
    assert live == again
    assert str(run) == "run of two_paths.py: 2 step(s)"
    with graphscope.record() as recording:
        (torch.ones(1, requires_grad=True) * 2).backward()
        (torch.ones(1, requires_grad=True) * 2).backward()
    assert repr(recording) == "<graphscope session, recorded: 2 step(s) (backward)>"
    change = graphscope.diff(run[0], run[1])
    assert str(change) == change.summary() and str(change).startswith("step 0 (8 nodes) -> step 1 (8 nodes)")
    with pytest.raises(GraphscopeError, match="not a graphscope run"):
        (tmp_path / "junk.json").write_text(json.dumps({"hello": 1}))
        graphscope.load(tmp_path / "junk.json")


def test_run_output_is_byte_identical(tmp_path):
    contents = []
    for name in ("a", "b"):
        done = run_graphscope("render", str(EXAMPLES / "wrong_update_retain.py"), "-o", str(tmp_path / name),
                              "--format", "svg,json,dot")
        assert done.returncode == 0
        contents.append({p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())})
    assert contents[0] == contents[1]
    assert {"growth.svg", "session.json", "step-0004.svg"} <= set(contents[0])


def test_session_json_is_a_head_a_line_per_step_and_an_index(tmp_path):
    session = record_script(str(EXAMPLES / "no_zero_grad.py"), (), saved=False, source=True, on_step=None)
    run = Run(session.snapshots, "no_zero_grad.py", session.status, diagnose(session))
    path = graphscope.save(run.snapshots, tmp_path / "session.json", run.script, run.status, run.findings)
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    head, tail = json.loads(lines[0]), json.loads(lines[-1])
    assert head == {"format": 2, "script": run.script, "status": run.status, "steps": len(run.snapshots),
                    "findings": [f.to_dict() for f in run.findings]} and run.findings
    assert len(lines) == len(run.snapshots) + 2
    assert tail["index"] == [sum(map(len, lines[:k])) for k in range(1, len(lines))]
    again = graphscope.load(path)
    assert again.snapshots == run.snapshots and again.findings == run.findings
    assert [s.to_json() for s in again.snapshots] == [s.to_json() for s in run.snapshots]
    graphscope.save([], tmp_path / "empty.json")
    assert len(graphscope.load(tmp_path / "empty.json")) == 0


def test_a_growing_history_is_stored_once_and_read_lazily(tmp_path):
    torch.manual_seed(0)
    x, w = torch.randn(8), torch.randn(8, requires_grad=True)
    with graphscope.record() as session:
        for _ in range(60):
            (x * w).sum().backward()
            w = w - 0.1 * w.grad
            w.retain_grad()
    path = graphscope.save(session.snapshots, tmp_path / "session.json")
    whole = sum(len(s.to_json()) for s in session.snapshots)
    assert path.stat().st_size < whole / 3  # each step's line holds only what was new in it
    run = graphscope.load(path)
    path.unlink()  # the loaded run reads the file it mapped, not the path
    assert run[59].to_json() == session.snapshots[59].to_json()
    assert run[0].to_json() == session.snapshots[0].to_json()


@pytest.mark.parametrize("script", ["wrong_update_retain.py", "backward_twice.py", "rnn_hidden_state.py",
                                    "gru_language_model.py", "two_paths.py", "training_loop.py", "random_depth.py"])
def test_every_step_of_a_run_reads_back_from_its_file_as_it_was_recorded(script, tmp_path):
    """A whole step that reached leaves through accumulators an earlier step captured keeps
    those references in the file: the steps after it name those leaves and keep their
    gradients when read back."""
    with contextlib.redirect_stdout(io.StringIO()):
        session = record_script(str(EXAMPLES / script))
    path = graphscope.save(session.snapshots, tmp_path / "session.json")
    again = graphscope.load(path)
    assert [s.to_json() for s in again.snapshots] == [s.to_json() for s in session.snapshots]


def test_a_steady_step_stores_no_change_its_module_calls_and_uncounted_bytes_explain(tmp_path):
    """An echo step of a module loop runs the template's module calls numbered later and counts
    no saved bytes: its line says so once, not once per op."""
    with contextlib.redirect_stdout(io.StringIO()):
        session = record_script(str(EXAMPLES / "training_loop.py"))
    path = graphscope.save(session.snapshots, tmp_path / "session.json")
    lines = [json.loads(line) for line in path.read_bytes().splitlines()[1:-1]]
    echoes = [line for line in lines if "like" in line]
    assert echoes and all(line["calls_shift"] > 0 and line["saved_bytes"] is False for line in echoes)
    changed = {key for line in echoes for _, change in line["changes"] for key in change}
    assert changed <= {"grad", "grad_step"}
    again = graphscope.load(path)
    assert [s.to_json() for s in again.snapshots] == [s.to_json() for s in session.snapshots]


def test_a_step_json_file_and_its_line_in_the_run_file_share_one_encoding(tmp_path):
    for formats in ("svg", "json"):
        done = run_graphscope("render", str(EXAMPLES / "wrong_update_retain.py"), "-o", str(tmp_path / formats),
                              "--format", formats, "--steps", "all")
        assert done.returncode == 0, done.stderr
    shared, own = graphscope.load(tmp_path / "json"), graphscope.load(tmp_path / "svg")
    assert [s.to_json() for s in shared.snapshots] == [s.to_json() for s in own.snapshots]
    line = (tmp_path / "json" / "session.json").read_bytes().splitlines()[1]
    step = (tmp_path / "json" / "step-0000.json").read_bytes().rstrip(b"\n")
    assert json.loads(line)["graph"] == json.loads(step) and step in line


def test_a_run_file_of_format_1_still_loads(tmp_path):
    session = record_script(str(EXAMPLES / "two_paths.py"))
    whole = {"format": 1, "script": "two_paths.py", "status": 0, "findings": [],
             "steps": [json.loads(s.to_json()) for s in session.snapshots]}
    (tmp_path / "old.json").write_text(json.dumps(whole, sort_keys=True, separators=(",", ":")) + "\n")
    run = graphscope.load(tmp_path / "old.json")
    assert run.snapshots == list(session.snapshots) and run.script == "two_paths.py"


def test_diff_of_a_growing_update_lists_only_the_new_updates(tmp_path):
    out = tmp_path / "run"
    script = EXAMPLES / "wrong_update_retain.py"
    run_graphscope("render", str(script), "-o", str(out), "--format", "json", "--no-report")
    done = run_graphscope("diff", f"{out}:3", f"{out}:4", "-o", str(tmp_path / "union.dot"))
    assert done.returncode == 0, done.stderr
    added = [line for line in done.stdout.splitlines() if line.startswith("  + ")]
    lines = {f"wrong_update_retain.py:{line_of(script, f'{p} = {p} - lr * {p}.grad')}" for p in "wb"}
    assert len(added) == 2 and all("SubBackward0" in line for line in added)
    assert {line.rsplit(" @ ", 1)[1] for line in added} == lines
    run = load(out)
    change = diff(run[3], run[4])
    assert sorted(run[4][i].op for i in change.added) == ["SubBackward0", "SubBackward0"]
    carried = {i for i in run[4].nodes if i.carried_over(4)}
    assert {run[4][i] for i in change.carried} == carried and not change.removed
    # the union picture draws only edges one of the two graphs has
    union = (tmp_path / "union.dot").read_text()
    drawn = {pair for pair in re.findall(r'^  "([^"]+)" -> "([^"]+)"', union, re.M)
             if not pair[0].startswith("legend_")}  # the legend's column is held together by invisible edges
    old_edges = {(change.matched.get(e.source, "removed:" + e.source), change.matched.get(e.target, "removed:" + e.target))
                 for e in run[3].edges}
    assert drawn <= {(e.source, e.target) for e in run[4].edges} | old_edges


def test_a_leaf_skipped_for_a_step_keeps_the_step_that_first_captured_it():
    """PyTorch frees b's AccumulateGrad with the last graph that used it: the step after one
    that skipped b meets a new one, yet b was first captured in step 0."""
    a = torch.ones(2, requires_grad=True)
    b = torch.ones(2, requires_grad=True)
    with graphscope.record(names={"a": a, "b": b}, gradients="all") as session:
        for step in range(4):
            y = a * 2
            if step != 1:
                y = y * b
            y.sum().backward()
    firsts = [{n.name: n.first_step for n in s.of_kind(NodeKind.LEAF)} for s in session.snapshots]
    assert firsts == [{"a": 0, "b": 0}, {"a": 0}, {"a": 0, "b": 0}, {"a": 0, "b": 0}]


def test_diff_says_which_added_nodes_were_made_in_an_earlier_step():
    """The generator's ops, made before the discriminator's step, enter a graph first in the
    generator's step: added (in neither graph before) and carried over (made earlier) at once,
    which the diff says of each instead of listing them twice unexplained."""
    with contextlib.redirect_stdout(io.StringIO()):
        run = record_script(str(EXAMPLES / "gan.py"), ["--detach", "--iterations", "1"])
    d_step, g_step = run.snapshots[1], run.snapshots[2]
    change = diff(d_step, g_step)
    both = set(change.added) & set(change.carried)
    assert both and all(g_step[i].first_step == 1 for i in both)
    text = change.summary()
    for i in both:
        assert f"({i}) @ {g_step[i].source} (made in step 1)" in text
    assert f"{len(both)} of them added above (made earlier, not in step 1's graph)" in text
