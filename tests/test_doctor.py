"""The doctor: every rule on a failing script and on its clean twin, with PyTorch as the reference.

Scripts run in-process through `record_script` (each once per test session, cached); a few
tests run the real `graphscope` command in a subprocess, as a user would.
"""

from __future__ import annotations

import functools
import json
import re
import runpy
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from click.testing import CliRunner

import graphscope
from graphscope.capture.runner import record_script
from graphscope.capture.stats import grad_stats
from graphscope.cli import main
from graphscope.doctor import diagnose
from graphscope.doctor import scriptsource
from graphscope.doctor.evidence import RULES, Evidence, grad_text
from graphscope.doctor.report import fails, report
from graphscope.model import Finding, NodeKind, Run
from graphscope.renderers.dot import to_dot

from conftest import EXAMPLES, run_graphscope

CORRECT = ["linear_fit.py", "sgd_by_hand.py", "linear_model.py", "mlp.py", "logistic_regression.py",
           "two_paths.py", "weighted_root.py", "higher_order.py", "d2l_linear_regression.py",
           "dot_product.py", "control_flow.py", "training_loop.py", "transformer.py", "compiled_model.py"]
FIXED = [("rnn_hidden_state.py", "--detach"), ("inplace_leaf.py", "--no-grad"),
         ("inplace_modified.py", "--out-of-place"), ("nonleaf_grad.py", "--retain-grad"),
         ("unused_parameter.py", "--use-all"), ("gan.py", "--detach"), ("gru_language_model.py", "--repackage")]


@functools.lru_cache(maxsize=None)
def recorded(script: str, *args: str) -> Run:
    """The Run of an example or a script path, run once with saved tensors as `doctor` does;
    the warnings it shows are kept out of pytest's summary."""
    path = Path(script) if Path(script).is_absolute() else EXAMPLES / script
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("default")
        return record_script(str(path), args, saved=True)


def findings(script: str, *args: str) -> list[Finding]:
    """The doctor's findings for a script, as `graphscope doctor` gives them."""
    return diagnose(recorded(script, *args))


def evidence(script: str, *args: str) -> Evidence:
    """What the rules see of a script's run."""
    return Evidence.of(recorded(script, *args))


def of_rule(found: list[Finding], rule: str) -> list[Finding]:
    """The findings of one rule."""
    return [f for f in found if f.rule == rule]


def line_of(script: str, text: str) -> str:
    """`script.py:N` of the first line that starts with `text`: where a finding must point."""
    path = Path(script) if Path(script).is_absolute() else EXAMPLES / script
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip().startswith(text):
            return f"{path.name}:{number}"
    raise AssertionError(f"{text!r} is not in {script}")


def write_script(tmp_path: Path, name: str, *parts: str) -> str:
    """A small script in tmp_path from its parts, each dedented; returns its path."""
    path = tmp_path / name
    path.write_text("".join(textwrap.dedent(part).rstrip(" ") for part in parts))
    return str(path)


# --- no finding on correct scripts -------------------------------------------------------------


@pytest.mark.parametrize("script", CORRECT)
def test_correct_examples_have_no_findings(script):
    assert findings(script) == []


@pytest.mark.parametrize("script, flag", FIXED)
def test_fixed_twins_have_no_findings(script, flag):
    assert findings(script, flag) == []


def test_every_rule_reports_under_its_own_id():
    assert list(RULES) == ["non-leaf-parameter", "graph-growth", "grad-accumulation", "no-grad-param",
                           "wrong-model-grad", "nonfinite-grad", "dead-grad", "backward-twice", "inplace-leaf",
                           "inplace-modified", "nonleaf-grad-access", "tensor-truthiness", "ddp-unused-parameter"]
    scripts = ["wrong_update.py", "no_zero_grad.py", "backward_twice.py", "nan_gradient.py", "truthiness.py",
               "inplace_leaf.py", "inplace_modified.py", "nonleaf_grad.py", "unused_parameter.py",
               "total_loss_graph.py", "rnn_hidden_state.py", "wrong_update_retain.py", "gan.py", "single_class.py"]
    seen = set()
    for script in scripts:
        for rule_id, check in RULES.items():
            emitted = {f.rule for f in check(evidence(script))}
            assert emitted <= {rule_id}
            seen |= emitted
        for finding in findings(script):
            path, line = scriptsource.split_location(finding.location)
            assert path == script and 0 < line <= len((EXAMPLES / script).read_text().splitlines())
    assert seen == set(RULES) - {"ddp-unused-parameter"}  # needs torchrun: see test_ranks.py


# --- non-leaf-parameter ------------------------------------------------------------------------


def test_wrong_update_makes_w_a_non_leaf_at_the_update_line():
    w = torch.tensor([0.3923], requires_grad=True)
    (w * 2).sum().backward()
    updated = w - 1e-3 * w.grad
    assert not updated.is_leaf and updated.grad_fn.name() == "SubBackward0"

    found = of_rule(findings("wrong_update.py"), "non-leaf-parameter")
    assert [f.location for f in found] == [line_of("wrong_update.py", "w = w - lr * w.grad"),
                                           line_of("wrong_update.py", "b = b - lr * b.grad")]
    first = found[0]
    assert first.severity == "error" and first.step == 1 and first.explains_failure
    assert "SubBackward0" in first.message and "w.grad None" in first.message
    assert "TypeError" in first.message and "torch.no_grad()" in first.fix
    snapshot = recorded("wrong_update.py")[1]
    assert [snapshot[n].kind for n in first.nodes] == [NodeKind.TENSOR, NodeKind.LEAF]
    assert snapshot[first.nodes[0]].name == "w" and snapshot[first.nodes[0]].is_leaf is False


def test_retained_non_leaf_is_still_named():
    found = of_rule(findings("wrong_update_retain.py"), "non-leaf-parameter")
    assert [f.location for f in found] == [line_of("wrong_update_retain.py", "w = w - lr * w.grad"),
                                           line_of("wrong_update_retain.py", "b = b - lr * b.grad")]
    assert "retain_grad() keeps w.grad filled" in found[0].message


def test_non_leaf_parameter_clean_twin():
    assert list(RULES["non-leaf-parameter"](evidence("linear_fit.py"))) == []


# --- graph-growth --------------------------------------------------------------------------


def test_rnn_hidden_state_growth_names_h_and_the_steps_it_spans():
    session = recorded("rnn_hidden_state.py")
    last = session[-1]
    carried = {n.first_step for n in last.nodes if n.carried_over(last.step)}
    assert carried == {0, 1, 2}

    [found] = of_rule(findings("rnn_hidden_state.py"), "graph-growth")
    assert found.location == line_of("rnn_hidden_state.py", "h = cell(inputs[batch, t], h)")
    assert found.step == 3 and found.severity == "error"
    assert "`h`" in found.message and "the graphs of steps 0–2 (" in found.message
    assert all(last[n].carried_over(3) for n in found.nodes)
    assert "h = h.detach()" in found.fix
    assert list(RULES["graph-growth"](evidence("rnn_hidden_state.py", "--detach"))) == []


def test_update_history_growth_suggests_no_grad():
    [found] = of_rule(findings("wrong_update_retain.py"), "graph-growth")
    assert found.location == line_of("wrong_update_retain.py", "w = w - lr * w.grad")
    assert "the graphs of steps 1–3 (" in found.message and "torch.no_grad()" in found.fix


def test_growth_examines_only_the_step_with_the_longest_history(monkeypatch):
    """Every step of a growing loop is counted, but only the chosen one is examined: examining
    each (its entries, users and lines) made the doctor quadratic in a long run's steps."""
    from graphscope.doctor.rules import growth as rules
    examined, carried = [], rules.carried
    monkeypatch.setattr(rules, "carried", lambda ev, snapshot: examined.append(snapshot.step) or carried(ev, snapshot))
    [found] = list(RULES["graph-growth"](evidence("wrong_update_retain.py")))
    assert examined == [found.step] == [4]


def test_summed_loss_tensor_keeps_every_steps_graph(tmp_path):
    [found] = findings("total_loss_graph.py")
    assert found.rule == "graph-growth" and found.severity == "warning"
    assert found.location == line_of("total_loss_graph.py", "total_loss += loss")
    assert "all 5 captured steps" in found.message and "total_loss += loss.item()" in found.fix
    fixed = (EXAMPLES / "total_loss_graph.py").read_text().replace("total_loss += loss ", "total_loss += loss.item() ")
    assert findings(write_script(tmp_path, "total_loss_item.py", fixed)) == []


def test_a_running_average_of_the_loss_tensor_keeps_every_steps_graph(tmp_path):
    source = (EXAMPLES / "total_loss_graph.py").read_text()
    script = write_script(tmp_path, "running.py", source.replace("total_loss += loss ", "total_loss = 0.9 * total_loss + 0.1 * loss "))
    [found] = findings(script)
    assert found.rule == "graph-growth" and found.location == line_of(script, "total_loss = 0.9 * total_loss")
    assert "all 5 captured steps" in found.message
    assert "`total_loss = 0.9 * total_loss + 0.1 * loss.item()`" in found.fix
    fixed = source.replace("total_loss += loss ", "total_loss = 0.9 * total_loss + 0.1 * loss.item() ")
    assert findings(write_script(tmp_path, "running_item.py", fixed)) == []


def test_growth_from_one_earlier_graph_is_not_growth():
    second = recorded("two_paths.py")[1]
    assert {n.first_step for n in second.of_kind(NodeKind.FUNCTION)} == {0}
    assert list(RULES["graph-growth"](evidence("two_paths.py"))) == []


# --- grad-accumulation ---------------------------------------------------------------------


def seed_gradients() -> tuple[list[float], list[float]]:
    """w.grad after each of the line fit's first 3 iterations without zeroing (gradients never zeroed), and what
    each iteration's own loss contributed, computed by PyTorch."""
    x = torch.tensor([[3.3], [4.4], [5.5], [6.71], [6.93], [4.168], [9.779], [6.182], [7.59], [2.167],
                      [7.042], [10.791], [5.313], [7.997], [3.1]])
    y = torch.tensor([[1.7], [2.76], [2.09], [3.19], [1.694], [1.573], [3.366], [2.596], [2.53], [1.221],
                      [2.827], [3.465], [1.65], [2.904], [1.3]])
    torch.manual_seed(2)
    w, b = torch.randn(1, requires_grad=True), torch.randn(1, requires_grad=True)
    summed, own = [], []
    for _ in range(3):
        loss = torch.mean((torch.mul(x, w) + b - y) ** 2)
        own.append(torch.autograd.grad(loss, w, retain_graph=True)[0].item())
        loss.backward()
        w.data, b.data = w.data - 1e-3 * w.grad.data, b.data - 1e-3 * b.grad.data
        summed.append(w.grad.item())
    return summed, own


def test_no_zero_grad_accumulates_the_seed_values():
    summed, own = seed_gradients()
    assert [f"{g:.4f}" for g in summed] == ["-0.5801", "-1.1069", "-1.5320"]
    [found] = findings("no_zero_grad.py")
    assert found.rule == "grad-accumulation" and found.severity == "warning" and found.step == 2
    assert found.location == line_of("no_zero_grad.py", "loss.backward()")
    assert f"w.grad is {summed[-1]:.4f}" in found.message
    assert "(" + ", ".join(f"{g:.4f}" for g in own) + ")" in found.message
    assert "`w.grad` and `b.grad` were never zeroed" in found.message and "zero_grad()" in found.fix


def test_a_second_backward_through_the_same_graph_is_one_of_the_sums_terms(tmp_path):
    script = write_script(tmp_path, "twice_a_step.py", """\
        import torch
        w = torch.tensor(2.0, requires_grad=True)
        for step in range(2):
            loss = w * w * (step + 3)
            loss.backward(retain_graph=True)
            loss.backward()
            with torch.no_grad():
                w -= 0.01 * w.grad
        """)
    w, added, grads = torch.tensor(2.0, requires_grad=True), [], []
    for step in range(2):
        loss = w * w * (step + 3)
        for _ in range(2):
            before = w.grad.item() if w.grad is not None else 0.0
            loss.backward(retain_graph=True)
            added.append(w.grad.item() - before)
            grads.append(w.grad.item())
        with torch.no_grad():
            w -= 0.01 * w.grad
    [found] = findings(script)
    assert found.rule == "grad-accumulation" and found.step == 2  # the last backward through a new graph
    listed = "(" + ", ".join(f"{g:.4f}" for g in added[:3]) + ")"
    assert f"after step 2, w.grad is {grads[2]:.4f}, the sum of 3 steps' gradients {listed}" in found.message


def test_the_fix_names_a_layer_of_a_sequential_as_python_reads_it(tmp_path):
    script = write_script(tmp_path, "sequential_no_zero.py", """\
        import torch
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
        x = torch.randn(8, 3)
        for step in range(3):
            model(x).pow(2).mean().backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.1 * p.grad
        """)
    [found] = findings(script)
    assert found.rule == "grad-accumulation"
    [code] = re.findall(r"`(model[^`]*\.grad = None)`", found.fix)
    assert re.fullmatch(r"model\[[02]\]\.(weight|bias)\.grad = None", code), found.fix
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    exec(code, {"model": model})  # the fix runs (`model.2.bias.grad` would be a SyntaxError)


def test_zeroing_every_n_steps_is_deliberate(tmp_path):
    script = write_script(tmp_path, "every_two.py", """\
        import torch
        w = torch.tensor([1.0, 2.0], requires_grad=True)
        for step in range(6):
            (w * (step + 1)).sum().backward()
            if step % 2 == 1:
                with torch.no_grad():
                    w -= 0.1 * w.grad
                w.grad = None
        """)
    session = recorded(script)
    assert [s.find("w").grad.values for s in session][:3] == [(1.0, 1.0), (3.0, 3.0), (3.0, 3.0)]
    assert findings(script) == []


LINEAR = """\
    import torch
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 3)
    """


def test_optimizer_stepping_on_summed_grads_and_summing_before_one_step(tmp_path):
    never_zeroed = write_script(tmp_path, "never_zeroed.py", LINEAR, """\
    for step in range(3):
        loss = model(x).pow(2).mean()
        loss.backward()
        optimizer.step()
    """)
    [found] = findings(never_zeroed)
    assert found.rule == "grad-accumulation" and found.location == line_of(never_zeroed, "loss.backward()")
    assert "`model.bias.grad` and `model.weight.grad` were never zeroed" in found.message
    micro_batches = write_script(tmp_path, "micro_batches.py", LINEAR, """\
    optimizer.zero_grad()
    for micro in range(4):
        model(x[micro::4]).pow(2).mean().backward()
    optimizer.step()
    """)
    assert recorded(micro_batches).optimizer_steps == (3,)
    assert findings(micro_batches) == []


# --- no-grad-param -------------------------------------------------------------------------


def test_unused_layer_gets_no_gradient():
    session = recorded("unused_parameter.py")
    leaves = {n.name for s in session for n in s.of_kind(NodeKind.LEAF)}
    assert "model.hidden.weight" in leaves and not leaves & {"model.skip.weight", "model.skip.bias"}
    [found] = findings("unused_parameter.py")
    assert found.rule == "no-grad-param" and found.severity == "warning" and found.step == 0
    assert found.location == line_of("unused_parameter.py", "optimizer.step()")
    assert "`model.skip.weight` and `model.skip.bias`" in found.message and "3 optimizer step(s)" in found.message


NET = """\
    import torch
    from torch import nn
    torch.manual_seed(0)
    model = nn.Sequential()
    model.body = nn.Linear(3, 4)
    model.head = nn.Linear(4, 1)
    {setup}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(5, 3)
    for step in range(2):
        optimizer.zero_grad()
        {forward}
        loss.backward()
        {step}
    """


def net_script(tmp_path: Path, name: str, forward: str, step: str = "optimizer.step()", setup: str = "") -> str:
    """The small NET training script with its setup, forward and step lines filled in."""
    return write_script(tmp_path, name, NET.format(setup=setup, forward=forward, step=step))


def test_detached_layer_points_at_the_detach(tmp_path):
    script = net_script(tmp_path, "detached.py", "loss = model.head(model.body(x).detach()).sum()")
    [found] = findings(script)
    assert found.rule == "no-grad-param" and found.location == line_of(script, "loss = model.head(model.body(x).detach())")
    assert "`model.body.weight` and `model.body.bias`" in found.message
    twin = net_script(tmp_path, "attached.py", "loss = model.head(model.body(x)).sum()")
    assert findings(twin) == []


def test_frozen_parameter_in_the_optimizer_is_info(tmp_path):
    script = net_script(tmp_path, "frozen.py", "loss = model.head(model.body(x)).sum()",
                        setup="model.body.requires_grad_(False)")
    [found] = findings(script)
    assert (found.rule, found.severity) == ("no-grad-param", "info")
    assert "requires_grad=False" in found.message and found.location == line_of(script, "optimizer.step()")


def test_zero_grad_between_backward_and_step(tmp_path):
    script = net_script(tmp_path, "late_zero.py", "loss = model.head(model.body(x)).sum()",
                        step="optimizer.zero_grad(); optimizer.step()")
    [found] = findings(script)
    assert found.rule == "no-grad-param" and "none of the optimizer's parameters" in found.message


LBFGS_LOOP = """\
    import torch
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x = torch.randn(20, 3)
    optimizer = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=5)
    def closure():
        optimizer.zero_grad()
        loss = model(x).pow(2).mean()
        {backward}
        return loss
    for _ in range(2):
        optimizer.step(closure)
    """


def test_a_closure_step_is_judged_by_the_gradients_its_closure_made(tmp_path):
    fine = write_script(tmp_path, "lbfgs.py", LBFGS_LOOP.format(backward="loss.backward()"))
    run = recorded(fine)
    assert len(run) >= 2 and run.idle_parameters == ()
    assert findings(fine) == []
    forgot = write_script(tmp_path, "lbfgs_no_backward.py", LBFGS_LOOP.format(backward="pass"))
    [found] = findings(forgot)
    assert found.rule == "no-grad-param" and found.location == line_of(forgot, "optimizer.step(closure)")


def test_gradients_summed_over_the_evaluations_of_lbfgs_steps_are_found(tmp_path):
    # LBFGS updates the parameters between the closure's calls inside one step(): a closure
    # that forgets zero_grad sums every evaluation's gradient, and the doctor said nothing
    script = write_script(tmp_path, "lbfgs_no_zero.py", LBFGS_LOOP.format(backward="loss.backward()")
                          .replace("        optimizer.zero_grad()\n", ""))
    plain = runpy.run_path(script)
    run = recorded(script)
    [found] = diagnose(run)
    assert found.rule == "grad-accumulation" and found.step == len(run) - 1
    assert found.location == line_of(script, "loss.backward()")
    expected = grad_stats([plain["model"].bias.grad])[0]
    assert f"model.bias.grad is {grad_text(expected)}, the sum of {len(run)} steps' gradients" in found.message
    assert "at the top of the closure for `optimizer.step(closure)`" in found.fix


CUSTOM_STEP = """\
    import torch
    class Custom(torch.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {{"lr": 0.1}})
        @torch.no_grad()
        def step(self, {signature}):
            {body}
            for group in self.param_groups:
                for p in group["params"]:
                    p.add_(p.grad, alpha=-0.1 * scale)
    w = torch.ones(2, requires_grad=True)
    opt = Custom([w])
    def closure(backward=True):
        opt.zero_grad()
        with torch.enable_grad():
            loss = (w * w).sum()
            if backward:
                loss.backward()
        return loss
    for _ in range(2):
        {call}
    """


@pytest.mark.parametrize("signature, body, call", [
    ("scale=1.0", "pass", "opt.zero_grad(); (w * w).sum().backward(); opt.step(0.5)"),
    ("closure=None", "scale = 1.0; closure(backward=True)", "opt.step(closure)"),
])
def test_a_custom_step_runs_under_graphscope_as_it_runs_plainly(tmp_path, signature, body, call):
    # the closure graphscope watches once replaced a number passed to step(), and took no arguments
    script = write_script(tmp_path, "custom_step.py", CUSTOM_STEP.format(signature=signature, body=body, call=call))
    plain = runpy.run_path(script)["w"]
    run = recorded(script)
    assert run.failure is None and run.status == 0 and len(run) == 2
    assert diagnose(run) == []
    assert run[1].find("w").grad.values == tuple(plain.grad.tolist())


def test_manual_update_of_an_unused_tensor_explains_the_failure(tmp_path):
    script = write_script(tmp_path, "manual.py", """\
        import torch
        w = torch.tensor([1.0], requires_grad=True)
        unused = torch.tensor([1.0], requires_grad=True)
        (w * 2).sum().backward()
        unused.data -= 0.1 * unused.grad
        """)
    assert recorded(script).failure.type == "TypeError"
    [found] = findings(script)
    assert found.rule == "no-grad-param" and found.explains_failure
    assert found.location == line_of(script, "unused.data -=") and "`unused.grad`, which is None" in found.message


# --- nonfinite-grad ------------------------------------------------------------------------


def test_nan_gradient_starts_at_sqrt():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]], requires_grad=True)
    target = torch.tensor([[1.0, 2.0], [0.0, 0.0], [0.0, 1.0]])
    squares = ((pred - target) ** 2).sum(dim=1)
    dist = torch.sqrt(squares)
    seen = {}
    dist.register_hook(lambda g: seen.setdefault("into sqrt", g))
    squares.register_hook(lambda g: seen.setdefault("out of sqrt", g))
    dist.mean().backward()
    assert torch.isfinite(seen["into sqrt"]).all() and torch.isinf(seen["out of sqrt"]).any()
    assert pred.grad.isnan().any()

    [found] = findings("nan_gradient.py")
    assert found.rule == "nonfinite-grad" and found.severity == "error" and found.step == 0
    assert found.location == line_of("nan_gradient.py", "dist = torch.sqrt(")
    snapshot = recorded("nan_gradient.py")[0]
    assert snapshot[found.nodes[0]].op == "SqrtBackward0" and "pred.grad" in found.message
    assert "vector_norm" in found.fix


def test_vector_norm_twin_has_no_nan(tmp_path):
    fixed = (EXAMPLES / "nan_gradient.py").read_text().replace(
        "torch.sqrt(((pred - target) ** 2).sum(dim=1))", "torch.linalg.vector_norm(pred - target, dim=1)")
    script = write_script(tmp_path, "norm.py", fixed)
    assert recorded(script)[0].find("pred").grad_step.nonfinite == 0
    assert findings(script) == []


# --- backward-twice ------------------------------------------------------------------------


def test_backward_twice_names_the_freed_saved_tensors():
    w, x = torch.tensor([1.0], requires_grad=True), torch.tensor([2.0], requires_grad=True)
    a, b = torch.add(w, x), torch.add(w, 1)
    y = torch.mul(a, b)
    assert torch.equal(y.grad_fn._saved_self, a) and torch.equal(y.grad_fn._saved_other, b)
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()

    [found] = findings("backward_twice.py")
    assert found.rule == "backward-twice" and found.explains_failure and found.step == 1
    assert found.location == line_of("backward_twice.py", "y.backward()  # RuntimeError")
    assert "a (self), b (other)" in found.message and "the backward of step 0" in found.message
    assert "retain_graph=True" in found.fix and "recompute the forward" in found.fix
    assert list(RULES["backward-twice"](evidence("two_paths.py"))) == []


def test_backward_twice_without_saved_tensors_still_names_the_function():
    session = record_script(str(EXAMPLES / "backward_twice.py"))
    [found] = diagnose(session)
    assert found.rule == "backward-twice" and "MulBackward0" in found.message and "(self)" not in found.message
    assert "AddBackward0" not in found.message  # an add saves no tensor, so a backward frees nothing of it
    freed = {n.op: bool(n.saved_freed) for n in session[1].of_kind(NodeKind.FUNCTION)}
    assert freed == {"MulBackward0": True, "AddBackward0": False}
    assert found.nodes == tuple(n.id for n in session[1].of_kind(NodeKind.FUNCTION) if n.op == "MulBackward0")


# --- inplace-leaf / inplace-modified ---------------------------------------------------------


def test_inplace_change_of_a_leaf():
    w = torch.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w -= 0.1
    [found] = findings("inplace_leaf.py")
    assert found.rule == "inplace-leaf" and found.explains_failure
    assert found.location == line_of("inplace_leaf.py", "w -= lr * w.grad  # RuntimeError")
    assert "changes `w` in place" in found.message and "torch.no_grad()" in found.fix


def test_inplace_change_of_a_saved_tensor_points_at_the_change():
    x = torch.tensor([0.0, 1.0], requires_grad=True)
    y = torch.exp(x)
    y += 1
    with pytest.raises(RuntimeError, match="is at version 1; expected version 0"):
        y.sum().backward()
    [found] = findings("inplace_modified.py")
    assert found.rule == "inplace-modified" and found.explains_failure
    assert found.location == line_of("inplace_modified.py", "y += 1  #")
    assert line_of("inplace_modified.py", "y = torch.exp(x)") in found.message and "version 0 → 1" in found.message
    snapshot = recorded("inplace_modified.py")[found.step]
    assert snapshot[found.nodes[0]].op == "ExpBackward0"
    assert not snapshot[found.nodes[0]].saved_freed  # changed in place, not freed by a backward
    plain = record_script(str(EXAMPLES / "inplace_modified.py"))[found.step]  # saved=False: probed on failure
    assert not any(n.saved_freed for n in plain.nodes)


def test_an_in_place_change_of_another_tensor_on_the_next_line_is_not_blamed(tmp_path):
    script = write_script(tmp_path, "inside_the_model.py", """\
        import torch
        from torch import nn
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Dropout(0.5, inplace=True), nn.Linear(4, 1))
        h = model(torch.randn(8, 3))
        h += 1.0
        h.pow(2).mean().backward()
        """)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Dropout(0.5, inplace=True), nn.Linear(4, 1))
    h = model(torch.randn(8, 3))
    h += 1.0
    with pytest.raises(RuntimeError, match=r"\[torch.FloatTensor \[8, 4\]\], which is output 0 of Relu"):
        h.pow(2).mean().backward()  # the ReLU output the Dropout changed, not h, which is [8, 1]
    [found] = findings(script)
    assert found.rule == "inplace-modified" and found.location == line_of(script, "h = model(")
    assert "an in-place op changed it afterwards" in found.message and "`h += 1.0`" not in found.message


# --- nonleaf-grad-access -------------------------------------------------------------------


def test_nonleaf_grad_read_is_found_and_still_shown_at_the_users_line():
    with pytest.warns(UserWarning, match="not a leaf Tensor"):
        assert (torch.ones(1, requires_grad=True) * 2).grad is None
    script = EXAMPLES / "nonleaf_grad.py"
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")
        session = record_script(str(script))
    where = line_of("nonleaf_grad.py", 'print("a.grad:", a.grad)')
    assert [f"{Path(w.filename).name}:{w.lineno}" for w in shown if "not a leaf" in str(w.message)] == [where]
    [found] = diagnose(session)
    assert found.rule == "nonleaf-grad-access" and found.location == where
    assert "`a.grad`" in found.message and "a.retain_grad()" in found.fix


def test_reading_grad_of_a_parameter_the_update_made_a_non_leaf_points_to_no_grad_not_retain_grad():
    found = {f.rule: f for f in findings("wrong_update.py")}
    read = found["nonleaf-grad-access"]
    assert read.location == line_of("wrong_update.py", "w = w - lr * w.grad")
    assert "torch.no_grad(): w -= lr * w.grad" in read.fix and "call `w.retain_grad()`" not in read.fix
    assert "torch.no_grad()" in found["non-leaf-parameter"].fix


# --- tensor-truthiness ---------------------------------------------------------------------


def test_truthiness_of_grads_in_the_seed_loop():
    found = findings("truthiness.py")
    assert [(f.rule, f.severity, f.location) for f in found] == [
        ("tensor-truthiness", "warning", line_of("truthiness.py", "if w.grad:")),
        ("tensor-truthiness", "warning", line_of("truthiness.py", "if b.grad:"))]
    assert "if w.grad is not None:" in found[0].fix
    assert "if w.grad:" in (EXAMPLES / "linear_fit.py").read_text()  # in a comment there, not a test
    assert list(RULES["tensor-truthiness"](evidence("linear_fit.py"))) == []


def test_truthiness_of_a_multi_element_grad_explains_the_failure(tmp_path):
    w = torch.ones(2, requires_grad=True)
    (w * 2).sum().backward()
    with pytest.raises(RuntimeError, match="more than one value is ambiguous"):
        bool(w.grad)
    script = write_script(tmp_path, "vector_grad.py", """\
        import torch
        w = torch.ones(2, requires_grad=True)
        (w * 2).sum().backward()
        if w.grad:
            w.grad.zero_()
        """)
    [found] = findings(script)
    assert (found.rule, found.severity, found.explains_failure) == ("tensor-truthiness", "error", True)
    assert found.location == line_of(script, "if w.grad:")


# --- reading the user's source -------------------------------------------------------------


@pytest.mark.parametrize("line, changed", [
    ("w -= lr * w.grad", ["w"]), ("w[0] = 1.0", ["w"]), ("model.w.add_(1)", ["model.w"]),
    ("w = w - lr * w.grad", []), ("w.data = w.data - 1", []), ("x.__iadd__(1)", []),
])
def test_inplace_changes(line, changed):
    assert scriptsource.inplace_changes(scriptsource.parse(line).body[0]) == changed


def test_statement_at_a_compound_header_is_the_header_only():
    tree = scriptsource.parse("for i in range(3):\n    if w.grad:\n        w.grad.zero_()\n")
    header = scriptsource.statement_at(tree, 2)
    assert isinstance(header, scriptsource.ast.If) and scriptsource.grad_reads(header) == ["w"]
    assert scriptsource.inplace_changes(header) == []
    assert scriptsource.inplace_changes(scriptsource.statement_at(tree, 3)) == ["w.grad"]


def test_truth_tests_and_accumulations():
    tree = scriptsource.parse(textwrap.dedent("""\
        for step in range(3):
            loss = f(step)
            loss.backward()
            total += loss
            report += loss.item()
            losses.append(loss)
            if not w.grad or w.grad is None:
                pass
            x = a if w else b
            avg = (avg * step + loss) / (step + 1)
            best = min(best, loss)
            smooth = 0.9 * smooth + 0.1 * loss.item()
        """))
    assert [(t.line, scriptsource.text(t.expression)) for t in scriptsource.truth_tests(tree)] == [
        (7, "w.grad"), (9, "w")]
    assert [(a.line, a.holder, a.appends, a.fixed) for a in scriptsource.accumulations(tree)] == [
        (4, "total", False, ""), (6, "losses", True, ""),
        (10, "avg", False, "avg = (avg * step + loss.item()) / (step + 1)")]


# --- failures no rule knows, the API, JSON, pictures ------------------------------------------


def test_unknown_failure_still_fails_the_doctor(tmp_path):
    script = write_script(tmp_path, "broken.py", """\
        import torch
        w = torch.ones(1, requires_grad=True)
        (w * 2).sum().backward()
        raise ValueError("the data loader ran dry")
        """)
    [found] = findings(script)
    assert (found.rule, found.severity, found.step) == ("script-failed", "error", 0)
    assert found.location == line_of(script, "raise ValueError") and "ValueError: the data loader ran dry" in found.message
    exits = write_script(tmp_path, "exits.py", "import sys\nsys.exit(3)\n")
    assert [f.message for f in findings(exits)] == ["the script exited with status 3."]


def test_api_doctor_run_saves_and_reloads_its_findings(tmp_path):
    run = graphscope.doctor(EXAMPLES / "no_zero_grad.py")
    assert [f.rule for f in run.findings] == ["grad-accumulation"] and run.status == 0
    graphscope.save(run.snapshots, tmp_path / "session.json", run.script, run.status, run.findings)
    again = graphscope.load(tmp_path / "session.json")
    assert again.findings == run.findings
    assert graphscope.diagnose(again, root=EXAMPLES) == run.findings
    assert Finding.from_dict(json.loads(json.dumps(run.findings[0].to_dict()))) == run.findings[0]


def test_diagnose_a_recorded_block_reads_this_file():
    w = torch.tensor([1.0], requires_grad=True)
    with graphscope.record() as session:
        for _ in range(2):
            (w * 3).sum().backward()
    [found] = graphscope.diagnose(session)
    path, line = scriptsource.split_location(found.location)
    assert found.rule == "grad-accumulation" and path.endswith("test_doctor.py")
    assert "(w * 3).sum().backward()" in Path(__file__).read_text().splitlines()[line - 1]
    assert "w.grad is 6.0000" in found.message


def test_fail_on_levels():
    warning = Finding("r", "warning", "m", "f")
    assert not fails([warning]) and fails([warning], "warning") and fails([warning], "info")
    assert not fails([warning], "never") and not fails([], "info")
    assert report([]) == "graphscope doctor: no autograd mistakes found"


def test_badges_mark_the_nodes_of_their_step():
    run_findings = findings("wrong_update.py")
    step0, step1 = recorded("wrong_update.py").snapshots
    badged = to_dot(step1, run_findings)
    lines = {line.split('"')[1]: line for line in badged.splitlines()
             if line.startswith('  "') and '" -> "' not in line}
    marked = {node for f in run_findings for node in f.nodes}
    assert marked and all("⚠ non-leaf-parameter" in lines[node] for node in marked)
    assert not any("⚠" in line for node, line in lines.items() if node not in marked and not node.startswith("legend_"))
    assert "the doctor's error (non-leaf-parameter at wrong_update.py:" in badged.replace("\\n", " ")
    assert to_dot(step0, run_findings) == to_dot(step0)
    assert to_dot(step1, run_findings) == badged


# --- the command line ----------------------------------------------------------------------


def test_doctor_command_reports_and_fails_on_errors(tmp_path):
    done = run_graphscope("doctor", str(EXAMPLES / "backward_twice.py"), "--json", str(tmp_path / "found.json"))
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "w.grad after the first backward" in done.stdout
    expected = line_of("backward_twice.py", "y.backward()  # RuntimeError")
    assert f"error backward-twice at {expected} (step 1)" in done.stderr and "fix: pass retain_graph=True" in done.stderr
    listed = json.loads((tmp_path / "found.json").read_text())
    assert [(f["rule"], f["location"]) for f in listed] == [("backward-twice", expected)]


def test_doctor_json_on_standard_output_is_only_the_json(tmp_path):
    done = run_graphscope("doctor", str(EXAMPLES / "backward_twice.py"), "--json", "-")
    assert done.returncode == 1
    listed = json.loads(done.stdout)
    assert [f["rule"] for f in listed] == ["backward-twice"]
    assert "w.grad after the first backward" in done.stderr  # the script's own print


def test_doctor_fail_on_threshold():
    runner = CliRunner()
    assert runner.invoke(main, ["doctor", str(EXAMPLES / "truthiness.py")]).exit_code == 0
    failing = runner.invoke(main, ["doctor", str(EXAMPLES / "truthiness.py"), "--fail-on", "warning"])
    assert failing.exit_code == 1 and "warning tensor-truthiness at truthiness.py:" in failing.output
    clean = runner.invoke(main, ["doctor", str(EXAMPLES / "dot_product.py"), "--fail-on", "info"])
    assert clean.exit_code == 0 and "no autograd mistakes found in dot_product.py" in clean.output


def test_doctor_bad_input_is_a_usage_error(tmp_path):
    done = CliRunner().invoke(main, ["doctor", str(tmp_path / "missing.py")])
    assert done.exit_code == 2 and "no such script" in done.output and "Traceback" not in done.output
    script = EXAMPLES / "backward_twice.py"
    under_a_file = CliRunner().invoke(main, ["doctor", str(script), "--json", str(script / "found.json")])
    assert under_a_file.exit_code == 2 and "is a file, not a folder" in under_a_file.output
    assert "w.grad after the first backward" not in under_a_file.output  # refused before the script ran
    into_a_folder = CliRunner().invoke(main, ["doctor", str(script), "--json", str(tmp_path)])
    assert into_a_folder.exit_code == 2 and "it is a folder" in into_a_folder.output


def test_render_shows_findings_in_summary_svg_and_session(tmp_path):
    done = run_graphscope("render", str(EXAMPLES / "wrong_update.py"), "-o", str(tmp_path), "--format", "svg,json",
                          "--no-report")
    assert done.returncode == 1
    assert f"error non-leaf-parameter at {line_of('wrong_update.py', 'w = w - lr * w.grad')}" in done.stderr
    assert "⚠ non&#45;leaf&#45;parameter" in (tmp_path / "step-0001.svg").read_text()
    assert "⚠" not in (tmp_path / "step-0000.svg").read_text()
    saved = graphscope.load(tmp_path / "session.json").findings
    assert [f.rule for f in saved] == ["non-leaf-parameter", "non-leaf-parameter", "nonleaf-grad-access"]
