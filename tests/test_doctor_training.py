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
    [error] = [f for f in findings("gan.py", "--retain", "--keep-g-grads") if f.rule == "wrong-model-grad"]
    assert error.severity == "error" and "applies both" in error.message


def test_a_correct_gan_has_no_finding():
    assert findings("gan.py", "--detach") == []
