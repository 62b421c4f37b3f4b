"""Steps that share history: each step walks only its new nodes, and rebuilding it gives the
graph that walking everything gives, gradients included."""

from __future__ import annotations

import contextlib
import io
import math

import pytest
import torch

import graphscope
from graphscope.model import NodeKind
from graphscope.model.snapshot import digest_of
from graphscope.capture.runner import record_script
from graphscope.capture.stats import SEGMENTED, SMALL_TENSOR, grad_stats

from conftest import EXAMPLES

HISTORY_EXAMPLES = ["wrong_update_retain.py", "backward_twice.py", "two_paths.py", "rnn_hidden_state.py",
                    "higher_order.py", "wrong_update.py"]


def same_stat(a, b) -> bool:
    """GradStats equal field by field, NaN equal to NaN."""
    if a is None or b is None:
        return a is b
    return all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
               for x, y in zip(a[:-1], b[:-1])) and (a.values is None) == (b.values is None)


def assert_same_step(rebuilt, walked) -> None:
    """`rebuilt` is `walked` (a whole walk with saved tensors) without its saved nodes."""
    kept = {n.id for n in walked.nodes if n.kind is not NodeKind.SAVED}
    nodes = [n for n in walked.nodes if n.id in kept]
    edges = [e for e in walked.edges if e.source in kept]
    strip = {"grad": None, "grad_step": None, "saved_freed": None, "origin": None}  # numbered per walk
    assert [n._replace(**strip) for n in rebuilt.nodes] == [n._replace(**strip) for n in nodes]
    assert [(e.source, e.target) for e in rebuilt.edges] == [(e.source, e.target) for e in edges]
    for mine, theirs in zip(rebuilt.nodes, nodes):
        assert same_stat(mine.grad, theirs.grad) and same_stat(mine.grad_step, theirs.grad_step), mine.id
    for mine, theirs in zip(rebuilt.edges, edges):
        assert same_stat(mine.grad, theirs.grad), (mine.source, mine.target)


def quietly(script: str, **options):
    """record_script without the script's own output."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return record_script(str(EXAMPLES / script), **options)


@pytest.mark.parametrize("script", HISTORY_EXAMPLES)
def test_rebuilt_steps_equal_walking_the_whole_graph(script):
    # saved=True walks every node of every step (saved tensors need them): the reference.
    incremental, whole = quietly(script, gradients="all"), quietly(script, saved=True)
    assert len(incremental) == len(whole) > 1
    for rebuilt, walked in zip(incremental.snapshots, whole.snapshots):
        assert_same_step(rebuilt, walked)


@pytest.mark.parametrize("script", ["wrong_update_retain.py", "backward_twice.py", "two_paths.py", "rnn_hidden_state.py",
                                    "gru_language_model.py"])
def test_a_rebuilt_step_is_digested_as_its_records_are_without_making_them(script):
    steps = quietly(script).snapshots
    assert not all(partial.whole for partial in steps.partials)
    for partial, step in zip(steps.partials, steps):
        digest = step.digest()
        assert partial.whole or "nodes" not in step.__dict__  # digesting a rebuilt step built no record
        whole = digest_of(step.nodes, step.edges, step.step)
        assert digest._replace(gradients=()) == whole._replace(gradients=())
        assert set(whole.gradients) <= set(digest.gradients)
        for kind in (NodeKind.OUTPUT, NodeKind.LEAF, NodeKind.TENSOR):
            assert step.of_kind(kind) == [n for n in step.nodes if n.kind is kind]


def named_history_loop(saved: bool):
    """Named tensors, a split and a leaf all end up deep in history carried from step to step."""
    torch.manual_seed(0)
    w = torch.randn(4, requires_grad=True)
    with graphscope.record(saved=saved, gradients="all") as session:
        h = w * 2
        parts = h.split(2)
        kept = parts[0]
        for step in range(4):
            loss = (kept.sum() + parts[1].prod()) * (step + 1)
            loss.backward(retain_graph=True)
            kept = kept * 1.5
    return session


def test_names_and_gradients_deep_in_history_survive_the_rebuild():
    incremental, whole = named_history_loop(False), named_history_loop(True)
    for rebuilt, walked in zip(incremental.snapshots, whole.snapshots):
        assert_same_step(rebuilt, walked)
    last = incremental.snapshots[-1]
    assert last.find("h").kind is NodeKind.TENSOR and last.find("w").grad is not None


def grad_through_history(w):
    """autograd.grad reaches a leaf only through history: no AccumulateGrad runs."""
    h = w * 2
    h.sum().backward(retain_graph=True)
    torch.autograd.grad((h * 3).sum(), w, retain_graph=True)


def grad_direct_and_through_history(w):
    """The leaf is used directly too: its share adds both paths."""
    h = w * 2
    h.sum().backward(retain_graph=True)
    torch.autograd.grad((h + w).sum(), w, retain_graph=True)


def grad_elsewhere(w):
    """The step's gradient never reaches w, deep in history: its `.grad` is still shown."""
    other = torch.ones(3, requires_grad=True)
    h = w * 2
    h.sum().backward(retain_graph=True)
    torch.autograd.grad((h * other).sum(), other)


def named_later(w):
    """First captured unnamed, named in a later step, then deep and unnamed again."""
    h = (w * 1).exp()
    h.sum().backward(retain_graph=True)
    alias = w
    (h + alias).sum().backward(retain_graph=True)
    del alias
    (h * 2).sum().backward(retain_graph=True)


def frozen_after(w):
    """A leaf deep in history stops requiring grad between steps."""
    h = w * 2
    h.sum().backward(retain_graph=True)
    w.requires_grad_(False)
    (h * 3).sum().backward(retain_graph=True)


PROGRAMS = [grad_through_history, grad_direct_and_through_history, grad_elsewhere, named_later, frozen_after]


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.__name__)
def test_leaves_deep_in_history_read_as_a_full_walk_reads_them(program):
    def run(saved):
        w = torch.ones(3, requires_grad=True)
        with graphscope.record(saved=saved, gradients="all") as session:
            program(w if program is not named_later else w.clone().detach().requires_grad_())
        return session

    incremental, whole = run(False), run(True)
    assert len(incremental) == len(whole) > 1
    for rebuilt, walked in zip(incremental.snapshots, whole.snapshots):
        assert_same_step(rebuilt, walked)


def test_shares_through_history_match_pytorch():
    w = torch.ones(3, requires_grad=True)
    with graphscope.record() as session:
        grad_direct_and_through_history(w)
    h = w * 2
    (expected,) = torch.autograd.grad((h + w).sum(), w)
    [leaf] = session[1].of_kind(NodeKind.LEAF)
    assert leaf.name == "w" and leaf.grad_step.values == tuple(expected.tolist()) == (3.0, 3.0, 3.0)
    assert leaf.grad.values == tuple(w.grad.tolist()) == (2.0, 2.0, 2.0)  # autograd.grad left .grad alone


def test_a_node_made_before_recording_keeps_the_source_of_its_first_capture():
    def run(saved):
        w = torch.ones(3, requires_grad=True)
        made_before = (w * 2).exp().sum()  # outside the session: its nodes have no source
        with graphscope.record(saved=saved, gradients="all") as session:
            made_before.backward(retain_graph=True)
            later = made_before * 3  # must not stamp the nodes step 0 captured with its line
            later.backward(retain_graph=True)
            (later * 1).backward(retain_graph=True)
        return session

    incremental, whole = run(False), run(True)
    for rebuilt, walked in zip(incremental.snapshots, whole.snapshots):
        assert_same_step(rebuilt, walked)
    assert {n.source for step in incremental.snapshots for n in step.nodes if n.op == "ExpBackward0"} == {None}


def test_each_step_walks_only_what_is_new():
    torch.manual_seed(0)
    x, y = torch.randn(8), torch.randn(8)
    w = torch.randn(1, requires_grad=True)
    with graphscope.record() as session:
        for _ in range(30):
            loss = ((x * w - y) ** 2).mean()
            (grad,) = torch.autograd.grad(loss, w)
            w = w - 0.01 * grad
    walked = [len(partial.children) for partial in session._partials]
    sizes = [len(s.nodes) for s in session.snapshots]
    assert sizes[-1] - sizes[2] == 27  # one more carried update per step ...
    assert set(walked[2:]) == {walked[2]}  # ... but every step walks the same number of nodes
    last = session.snapshots[-1]
    assert sum(n.carried_over(last.step) for n in last.nodes if n.kind is NodeKind.FUNCTION) == 28
    entry = last.find("w (from step 28)")  # where the history enters: the w of the step before
    assert entry.kind is NodeKind.TENSOR and entry.carried_over(last.step) and entry.first_step == 28
    assert last.find("w").grad is None and last.find("w (from step 0)").kind is NodeKind.LEAF


def test_steps_read_like_a_list():
    session = named_history_loop(False)
    steps = session.snapshots
    assert steps == list(steps) and steps[-1] == steps[len(steps) - 1] and steps[1:3] == [steps[1], steps[2]]
    with pytest.raises(IndexError):
        steps[len(steps)]


STAT_CASES = {
    "mixed sizes": [torch.randn(3), torch.randn(8, 8), torch.randn(SEGMENTED + 5), torch.randn(1)],
    "float64": [torch.randn(5, dtype=torch.float64), torch.randn(SEGMENTED * 2, dtype=torch.float64)],
    "non-finite": [torch.tensor([1.0, float("nan"), 2.0]), torch.tensor([float("inf"), -1.0]),
                   torch.full((SEGMENTED + 1,), float("-inf"))],
    "half": [torch.randn(100).half(), torch.randn(7).bfloat16()],
    "same shapes": [torch.randn(4, 8) for _ in range(5)] + [torch.full((4, 8), float("nan")), torch.randn(300),
                                                          torch.randn(300), torch.tensor([1.0, float("inf")] * 150)],
}


@pytest.mark.parametrize("case", sorted(STAT_CASES))
def test_gradient_statistics_match_pytorch(case):
    grads = STAT_CASES[case]
    for grad, stat in zip(grads, grad_stats(grads)):
        values = grad.double()
        finite = torch.isfinite(values)
        assert stat.numel == grad.numel() and stat.nonfinite == int((~finite).sum())
        assert stat.min == values.min().item() or (math.isnan(stat.min) and not finite.all())
        assert stat.max == values.max().item() or (math.isnan(stat.max) and not finite.all())
        if grad.numel() <= SMALL_TENSOR:
            assert stat.values == tuple(values.reshape(-1).tolist()) or not finite.all()
        if finite.all():  # large float32 gradients are reduced in float32 (no copy), the rest in float64
            tolerance = 1e-12 if grad.dtype == torch.float64 or grad.numel() <= SEGMENTED else 1e-6
            assert stat.norm == pytest.approx(torch.linalg.vector_norm(values).item(), rel=tolerance)
            assert stat.mean == pytest.approx(values.mean().item(), rel=tolerance, abs=tolerance)
        else:
            assert not math.isfinite(stat.norm)


def test_saved_bytes_are_what_pytorch_saved_and_carried_bytes_are_their_sum():
    x = torch.randn(4, 3)
    w = torch.randn(3, 5, requires_grad=True)
    with graphscope.record() as session:
        h = (x @ w).tanh()  # MmBackward0 saves x and w; TanhBackward0 saves its result
        h.sum().backward(retain_graph=True)
        mm = h.grad_fn.next_functions[0][0]
        saved = [t for t in (mm._saved_self, mm._saved_mat2) if t is not None]  # w's grad needs x only
        expected = {"MmBackward0": sum(t.numel() * t.element_size() for t in saved),
                    "TanhBackward0": h.grad_fn._saved_result.numel() * h.grad_fn._saved_result.element_size()}
        del mm
        (h * 2).sum().backward()
    assert expected == {"MmBackward0": 12 * 4, "TanhBackward0": 20 * 4}
    step0, step1 = session[0], session[1]
    assert {n.op: n.saved_bytes for n in step0.of_kind(NodeKind.FUNCTION) if n.op in expected} == expected
    from graphscope.analysis.growth import growth
    rows = growth(session.snapshots)
    carried = [n for n in step1.nodes if n.carried_over(1)]
    assert {n.op for n in carried} >= {"MmBackward0", "TanhBackward0"}
    assert rows[1].held == sum(n.saved_bytes or 0 for n in carried) == sum(expected.values())


def test_a_tensor_two_functions_saved_is_counted_once():
    """tanh saves its result, and the next matmul saves that same tensor for w2's gradient:
    the step holds it once, as PyTorch's storage does."""
    torch.manual_seed(0)
    x = torch.randn(4, 3)
    w1 = torch.randn(3, 5, requires_grad=True)
    w2 = torch.randn(5, 2, requires_grad=True)
    with graphscope.record() as session:
        out = (x @ w1).tanh() @ w2
        mm2 = out.grad_fn
        tanh = mm2.next_functions[0][0]
        mm1 = tanh.next_functions[0][0]
        saved = [mm2._saved_self, mm2._saved_mat2, tanh._saved_result, mm1._saved_self]
        distinct = {t.data_ptr(): t.numel() * t.element_size() for t in saved}
        assert len(distinct) == 3  # the tanh result is saved twice
        del mm2, tanh, mm1, saved
        out.sum().backward()
    functions = session[0].of_kind(NodeKind.FUNCTION)
    assert sum(n.saved_bytes for n in functions) == sum(distinct.values()) == (12 + 20 + 10) * 4
