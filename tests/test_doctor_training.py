"""The doctor on real training code: state carried between chunks, a GAN's two steps, two
optimizers, loss scaling, and parameters a model uses only some of the time."""

from __future__ import annotations

import functools
import io
import contextlib
import warnings
from pathlib import Path

import pytest

from graphscope.capture.runner import record_script
from graphscope.doctor import diagnose
from graphscope.model import Finding, Run

from conftest import EXAMPLES, run_graphscope

SCRIPTS = Path(__file__).parent / "scripts"


@functools.lru_cache(maxsize=None)
def recorded(script: str, *args: str) -> Run:
    """The Run of an example or a test script, run once with saved tensors as `doctor` does."""
    path = EXAMPLES / script if (EXAMPLES / script).exists() else SCRIPTS / script
    with warnings.catch_warnings(record=True), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("default")
        return record_script(str(path), args, saved=True)


def findings(script: str, *args: str) -> list[Finding]:
    """The doctor's findings for a script, as `graphscope doctor` gives them."""
    return diagnose(recorded(script, *args))


def line_of(script: str, text: str) -> str:
    """`script.py:N` of the first line that starts with `text`."""
    path = EXAMPLES / script if (EXAMPLES / script).exists() else SCRIPTS / script
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip().startswith(text):
            return f"{path.name}:{number}"
    raise AssertionError(f"{text!r} not in {script}")


def no_retain_graph_advice(found: list[Finding]) -> bool:
    """True when no finding tells the user to pass retain_graph=True."""
    return not any("retain_graph=True" in f.fix for f in found)


def test_hidden_state_carried_between_chunks_is_graph_growth_through_hidden():
    found = findings("gru_language_model.py")
    assert [f.rule for f in found] == ["graph-growth"]
    [growth] = found
    assert growth.severity == "error" and growth.explains_failure and growth.step == 1
    assert growth.location == line_of("gru_language_model.py", "output, hidden = self.rnn(emb, hidden)")
    assert "`hidden`" in growth.message and "hidden = hidden.detach()" in growth.fix
    assert no_retain_graph_advice(found)


def test_hidden_state_repackaged_is_fine():
    assert findings("gru_language_model.py", "--repackage", "--chunks", "3") == []


def test_doctor_command_on_the_hidden_state_script(tmp_path):
    done = run_graphscope("doctor", str(EXAMPLES / "gru_language_model.py"))
    assert done.returncode == 1
    report = done.stderr[done.stderr.index("graphscope doctor:"):]  # after the script's own traceback
    assert "error graph-growth at gru_language_model.py:" in report and "retain_graph=True" not in report


def test_gan_discriminator_step_without_detach_names_fake_and_the_line_that_used_it():
    found = findings("gan.py")
    twice = [f for f in found if f.rule == "backward-twice"]
    assert len(twice) == 1 and twice[0].explains_failure
    assert twice[0].location == line_of("gan.py", "output = netD(fake).view(-1)")
    assert "`fake`" in twice[0].message and "fake.detach()" in twice[0].fix
    assert no_retain_graph_advice(found)


def test_gradients_sent_to_the_generator_by_the_discriminator_step_are_a_finding():
    [warning] = [f for f in findings("gan.py", "--retain") if f.rule == "wrong-model-grad"]
    assert warning.severity == "warning" and warning.step == 1
    assert "netG.main.0.weight" in warning.message and "`optimizerD`" in warning.message
    assert "the stray gradients were never applied" in warning.message and "else zero" not in warning.fix
    [error] = [f for f in findings("gan.py", "--retain", "--keep-g-grads") if f.rule == "wrong-model-grad"]
    assert error.severity == "error" and "applies both" in error.message


def test_stray_gradients_are_said_never_applied_only_when_their_optimizer_did_not_step_first():
    [cleared] = [f for f in findings("two_models.py") if f.rule == "wrong-model-grad"]
    assert "never applied" in cleared.message and "else zero" not in cleared.fix
    [applied] = [f for f in findings("two_models.py", "--apply-stray") if f.rule == "wrong-model-grad"]
    assert "never applied" not in applied.message and "else zero" in applied.fix


def test_micro_batches_never_zeroed_after_the_optimizer_step_are_grad_accumulation():
    [found] = findings("micro_batches.py", "--forget")
    assert found.rule == "grad-accumulation" and found.step == 15
    assert "the sum of 16 steps' gradients" in found.message and "right after optimizer.step()" in found.fix
    assert findings("micro_batches.py") == []


def test_a_correct_gan_has_no_finding():
    assert findings("gan.py", "--detach") == []


def test_mixed_precision_overflow_while_the_scale_settles_is_information_only():
    found = findings("mixed_precision.py")
    assert [(f.rule, f.severity) for f in found] == [("nonfinite-grad", "info")]
    assert "GradScaler skipped steps 0–5 while its scale fell from 2^40 to 2^34" in found[0].message
    run = recorded("mixed_precision.py")
    assert [u.scale for u in run.scaler] == [2.0 ** k for k in range(40, 34, -1)] and all(u.skipped for u in run.scaler)
    assert [s.loss_scale for s in run.snapshots] == [2.0 ** k for k in range(40, 34, -1)]


def test_doctor_passes_the_mixed_precision_loop():
    done = run_graphscope("doctor", str(EXAMPLES / "mixed_precision.py"), "--fail-on", "warning")
    assert done.returncode == 0, done.stderr


def test_pictures_of_a_scaled_step_show_the_gradients_unscaled():
    import torch

    from graphscope.analysis.scaling import unscaled

    step = recorded("mixed_precision.py")[0]
    shown = unscaled(step)
    pairs = [(a, b) for a, b in zip(step.edges, shown.edges) if a.grad is not None and a.grad.nonfinite == 0]
    assert pairs and all(b.grad.norm == a.grad.norm / 2.0 ** 40 for a, b in pairs)
    assert any("divided by 2^40" in note for note in shown.notes)
    assert torch.isfinite(torch.tensor([b.grad.norm for _, b in pairs])).all()


def test_layers_used_in_some_steps_only_are_information_with_their_counts():
    import runpy

    import torch
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    used: dict[int, int] = {}

    def count(optimizer, *_):
        for group in optimizer.param_groups:
            for i, p in enumerate(group["params"]):
                used[i] = used.get(i, 0) + (p.grad is not None)

    handle = register_optimizer_step_pre_hook(count)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(str(EXAMPLES / "random_depth.py"), run_name="__main__")  # PyTorch alone: the reference
    finally:
        handle.remove()
    [found] = findings("random_depth.py")
    assert (found.rule, found.severity) == ("no-grad-param", "info")
    assert f"`model.hidden.0.weight` {used[2]}/30" in found.message and used[2] < 30
    assert "never" not in found.message
    # a zeroed .grad counts as one though no gradient came: no claim about when the forward used them
    assert "had a .grad at only some optimizer steps" in found.message and "used them" not in found.message


def test_failing_on_the_grad_of_a_parameter_an_update_rebound_is_non_leaf_parameter():
    found = findings("update_then_zero.py")
    [rebound] = [f for f in found if f.rule == "non-leaf-parameter"]
    assert rebound.explains_failure and rebound.location == line_of("update_then_zero.py", "b = b - lr * b.grad")
    assert "torch.no_grad()" in rebound.fix
    assert not [f for f in found if f.rule == "no-grad-param"]  # b is in the graph: it was rebound


def test_a_loss_that_cannot_change_has_dead_gradients():
    [found] = findings("single_class.py")
    assert (found.rule, found.severity) == ("dead-grad", "warning")
    assert "LogSoftmaxBackward0" in found.message and found.location == line_of("single_class.py", "loss = ")
    run = recorded("single_class.py")
    assert all(n.grad_step.norm == 0 for s in run for n in s.of_kind("leaf"))


def test_an_lstm_state_carried_as_a_tuple_gets_a_fix_that_runs():
    found = findings("lstm_language_model.py")
    assert [f.rule for f in found] == ["graph-growth"]
    assert "hidden = tuple(h.detach() for h in hidden)" in found[0].fix
    assert "hidden[0] =" not in found[0].fix  # a tuple's item cannot be assigned
    assert findings("lstm_language_model.py", "--repackage") == []



def test_the_doctor_counts_a_step_s_nodes_as_render_does():
    """The doctor records saved tensors too; a step's size in its message leaves them out."""
    [found] = findings("lstm_language_model.py")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        plain = record_script(str(SCRIPTS / "lstm_language_model.py"))
    assert f" of {len(plain.snapshots[found.step].nodes)} nodes" in found.message


def test_a_list_of_log_probs_never_emptied_is_graph_growth_with_the_list_to_empty():
    found = findings("reinforce.py")
    assert [f.rule for f in found] == ["graph-growth"]
    assert "policy.saved_log_probs" in found[0].message and "del policy.saved_log_probs[:]" in found[0].fix
    # the backward needs this step's log-probs: detached or .item() values would stop learning
    assert ".item()" not in found[0].fix and ".detach()" not in found[0].fix
    assert found[0].explains_failure and no_retain_graph_advice(found)


def test_saved_actions_never_emptied_are_graph_growth_with_the_list_to_empty():
    """The entries are named by the loop that reads them (`log_prob`, `value`); the line that
    made them appends them to the list that keeps them, which is what the fix must empty."""
    found = findings("actor_critic.py")
    growth = [f for f in found if f.rule == "graph-growth"]
    assert len(growth) == 1 and "backward-twice" not in {f.rule for f in found}
    assert "`model.saved_actions`" in growth[0].message and "del model.saved_actions[:]" in growth[0].fix
    assert growth[0].location == line_of("actor_critic.py", "model.saved_actions.append(")
    assert no_retain_graph_advice(found)


def test_an_in_place_error_on_carried_history_is_explained_by_the_carried_state():
    found = findings("rnncell_retain.py")
    assert [f.rule for f in found] == ["graph-growth"]
    assert found[0].explains_failure and "`h`" in found[0].message and "h = h.detach()" in found[0].fix
    assert "changed in place" in found[0].message


def test_lbfgs_with_a_closure_is_fine():
    assert findings("lbfgs.py") == []
