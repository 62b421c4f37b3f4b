"""Gradients on the graph: every number checked against what PyTorch itself computes."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import graphscope
from graphscope.capture import overlay
import graphscope.renderers.dot
from graphscope import NodeKind
from graphscope.capture.runner import record_script

from conftest import EXAMPLES, needs_cuda


def values(stat):
    """The gradient values of a GradStat as a plain list."""
    assert stat is not None and stat.values is not None
    return list(stat.values)


def line_fit_data():
    """The line fit's fifteen points and its seeded parameters."""
    x = torch.tensor([[3.3], [4.4], [5.5], [6.71], [6.93], [4.168], [9.779], [6.182], [7.59], [2.167],
                      [7.042], [10.791], [5.313], [7.997], [3.1]])
    y = torch.tensor([[1.7], [2.76], [2.09], [3.19], [1.694], [1.573], [3.366], [2.596], [2.53], [1.221],
                      [2.827], [3.465], [1.65], [2.904], [1.3]])
    torch.manual_seed(2)
    return x, y, torch.randn(1, requires_grad=True), torch.randn(1, requires_grad=True)


def reference_no_zero_grad(steps: int = 3) -> tuple[list[float], list[float]]:
    """Gradients never zeroed, computed by plain PyTorch: w.grad after each step and each step's share."""
    x, y, w, b = line_fit_data()
    grads, shares = [], []
    for _ in range(steps):
        loss = torch.mean((torch.mul(x, w) + b - y) ** 2)
        before = 0.0 if w.grad is None else w.grad.item()
        loss.backward()
        grads.append(w.grad.item())
        shares.append(w.grad.item() - before)
        w.data = w.data - 1e-3 * w.grad.data
        b.data = b.data - 1e-3 * b.grad.data
    return grads, shares


def test_gradients_never_zeroed_accumulation_is_visible():
    session = record_script(str(EXAMPLES / "no_zero_grad.py"))
    assert session.status == 0 and len(session) == 3
    grads, shares = reference_no_zero_grad()
    for step, snap in enumerate(session.snapshots):
        w = snap.find("w")
        assert values(w.grad) == pytest.approx([grads[step]], rel=1e-6)
        assert values(w.grad_step) == pytest.approx([shares[step]], rel=1e-5)
    assert [round(s.find("w").grad.values[0], 4) for s in session] == [-0.5801, -1.1069, -1.532]
    assert [round(s.find("w").grad_step.values[0], 4) for s in session] == [-0.5801, -0.5269, -0.4251]


def test_two_paths_and_second_backward():
    with graphscope.record() as session:
        w = torch.tensor([1.0], requires_grad=True)
        x = torch.tensor([2.0], requires_grad=True)
        a = torch.add(w, x)
        a.retain_grad()
        b = torch.add(w, 1)
        y = torch.mul(a, b)
        y.backward(retain_graph=True)
        first_w, first_a = w.grad.clone(), a.grad.clone()
        y.backward()
    assert values(session[0].find("w").grad) == first_w.tolist() == [5.0]
    assert values(session[0].find("a").grad) == first_a.tolist() == [2.0]
    assert values(session[1].find("w").grad) == w.grad.tolist() == [10.0]
    assert values(session[1].find("w").grad_step) == [5.0]
    snap = session[0]
    w_id = snap.find("w").id
    into_w = sorted(values(e.grad)[0] for e in snap.edges if e.source == w_id)
    assert into_w == [2.0, 3.0]


def test_non_retained_tensor_shows_what_flowed_but_not_stored():
    w = torch.tensor([1.0], requires_grad=True)
    b = w + 1
    y = b * 3
    snap = graphscope.capture(y)
    node = snap.find("b")
    assert node.grad is None and values(node.grad_step) == [3.0]
    assert b.grad_fn is not None


def test_weighted_non_scalar_root():
    session = record_script(str(EXAMPLES / "weighted_root.py"))
    assert session.status == 0
    w = torch.tensor([1.0], requires_grad=True)
    x = torch.tensor([2.0], requires_grad=True)
    a, b = x + w, w + 1
    torch.cat([a * b, a + b]).backward(gradient=torch.tensor([1.0, 2.0]))
    assert values(session[0].find("w").grad) == w.grad.tolist() == [9.0]


def test_higher_order():
    session = record_script(str(EXAMPLES / "higher_order.py"))
    assert session.status == 0 and [s.call for s in session] == ["grad", "grad"]
    x = torch.tensor([3.0], requires_grad=True)
    first = torch.autograd.grad(x ** 2, x, create_graph=True)[0]
    second = torch.autograd.grad(first, x)[0]
    assert values(session[0].find("x").grad_step) == first.tolist() == [6.0]
    assert values(session[1].find("x").grad_step) == second.tolist() == [2.0]
    assert "MulBackward0" in {n.op for n in session[1].nodes}
    assert len(session[1].nodes) > len(session[0].nodes)


def test_dot_product():
    session = record_script(str(EXAMPLES / "dot_product.py"))
    x = torch.arange(4.0, requires_grad=True)
    (2 * torch.dot(x, x)).backward()
    assert values(session[0].find("x").grad) == x.grad.tolist() == [0.0, 4.0, 8.0, 12.0]


def test_control_flow():
    session = record_script(str(EXAMPLES / "control_flow.py"))
    a = torch.tensor(2.0, requires_grad=True)
    b = a * 2
    while b.norm() < 1000:
        b = b * 2
    (b if b.sum() > 0 else 100 * b).backward()
    snap = session[0]
    assert values(snap.find("a").grad) == [a.grad.item()] == [512.0]
    muls = [n for n in snap.nodes if n.kind is NodeKind.FUNCTION and n.op == "MulBackward0"]
    assert len(muls) == 9


def test_nan_gradient_is_counted_on_the_edges():
    session = record_script(str(EXAMPLES / "nan_gradient.py"))
    snap = session[0]
    bad_edges = [e for e in snap.edges if e.grad is not None and e.grad.nonfinite]
    assert bad_edges
    leaf = snap.of_kind("leaf")[0]
    assert leaf.grad.nonfinite == sum(not math.isfinite(v) for v in leaf.grad.values) > 0
    dot = graphscope.renderers.dot.to_dot(snap)
    assert "NaN/Inf" in dot


def test_hooks_are_removed_after_capture(monkeypatch):
    calls = []
    original = overlay._Recorder.record
    monkeypatch.setattr(overlay._Recorder, "record",
                        lambda self, *args: calls.append(1) or original(self, *args))
    w = torch.ones(3, requires_grad=True)
    y = (w * 2).sum()
    snap = graphscope.capture(y, retain_graph=True)
    during = len(calls)
    assert during == len(snap.of_kind("function")) == 2  # the leaf's share comes from its consumer
    y.backward()
    assert len(calls) == during and w.grad.tolist() == [4.0, 4.0, 4.0]


def test_session_restores_torch_functions_even_on_error():
    original = (torch.autograd.backward, torch.autograd.grad)
    with pytest.raises(RuntimeError):
        with graphscope.record():
            x = torch.ones(1, requires_grad=True)
            y = x * 2
            y.backward()
            y.backward()
    assert (torch.autograd.backward, torch.autograd.grad) == original


def test_failed_backward_is_still_recorded():
    session = graphscope.record()
    with pytest.raises(RuntimeError, match="second time"):
        with session:
            x = torch.ones(1, requires_grad=True)
            y = x * x
            y.backward()
            y.backward()
    assert len(session) == 2


def test_large_gradient_has_statistics_but_no_values():
    x = torch.randn(100, requires_grad=True)
    snap = graphscope.capture((x * 3).sum())
    stat = snap.find("x").grad
    assert stat.values is None and stat.numel == 100 and stat.shape == (100,)
    reference = torch.full((100,), 3.0, dtype=torch.float64)
    assert stat.norm == pytest.approx(reference.norm().item())
    assert (stat.mean, stat.min, stat.max, stat.nonfinite) == (3.0, 3.0, 3.0, 0)


OPS = {
    "add": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
    "sub": lambda a, b: a - b,
    "tanh_mul": lambda a, b: torch.tanh(a) * b,
    "sin_add": lambda a, b: torch.sin(a) + b,
    "square": lambda a, b: a * a,
}


@settings(max_examples=40, deadline=None)
@given(
    program=st.lists(
        st.tuples(st.sampled_from(sorted(OPS)), st.integers(0, 10), st.integers(0, 10)),
        min_size=1, max_size=12,
    ),
    seed=st.integers(0, 1000),
)
def test_hooked_gradients_sum_to_what_pytorch_accumulated(program, seed):
    torch.manual_seed(seed)
    leaves = [torch.randn(3, requires_grad=True) for _ in range(3)]
    for leaf in leaves:
        leaf.grad = torch.randn(3)
    before = [leaf.grad.clone() for leaf in leaves]
    values_ = list(leaves)
    for op, i, j in program:
        values_.append(OPS[op](values_[i % len(values_)], values_[j % len(values_)]))
    loss = values_[-1].sum()
    if not loss.requires_grad:
        return
    snap = graphscope.capture(loss, names={f"p{k}": leaf for k, leaf in enumerate(leaves)})
    for k, leaf in enumerate(leaves):
        delta = (leaf.grad - before[k]).tolist()
        try:
            node = snap.find(f"p{k}")
        except KeyError:
            assert delta == [0.0, 0.0, 0.0]
            continue
        assert values(node.grad_step) == pytest.approx(delta, rel=1e-5, abs=1e-5)
        assert values(node.grad) == pytest.approx(leaf.grad.tolist(), rel=1e-6)
        outgoing = [e.grad for e in snap.edges if e.source == node.id]
        total = [sum(vals) for vals in zip(*(values(g) for g in outgoing))]
        assert total == pytest.approx(delta, rel=1e-5, abs=1e-5)


@needs_cuda
def test_cuda_gradients_match_pytorch():
    device = torch.device("cuda")
    x = torch.randn(5, device=device, requires_grad=True)
    cpu_part = torch.randn(5, requires_grad=True)
    loss = (torch.sin(x) * cpu_part.to(device)).sum()
    snap = graphscope.capture(loss)
    assert values(snap.find("x").grad) == pytest.approx(x.grad.cpu().tolist(), rel=1e-6)
    assert values(snap.find("cpu_part").grad) == pytest.approx(cpu_part.grad.tolist(), rel=1e-6)
    assert snap.find("x").device.startswith("cuda")


def test_sparse_gradient_statistics_count_the_implicit_zeros():
    emb = torch.nn.Embedding(4, 2, sparse=True)
    snap = graphscope.capture((emb(torch.tensor([1, 2, 1])) * torch.tensor([[1.0, 2.0]])).sum())
    stat, dense = snap.find("emb.weight").grad, emb.weight.grad.to_dense()
    assert (stat.numel, stat.values) == (8, None)
    assert (stat.mean, stat.min, stat.max) == pytest.approx(
        (dense.mean().item(), dense.min().item(), dense.max().item()))
    assert stat.norm == pytest.approx(dense.norm().item())


def test_this_step_is_what_reached_grad_after_the_leafs_own_hooks():
    w = torch.ones(3, requires_grad=True)
    w.register_hook(lambda grad: grad * 0)
    snap = graphscope.capture((w * 5).sum())
    assert values(snap.find("w").grad_step) == w.grad.tolist() == [0.0, 0.0, 0.0]


def test_autograd_grad_does_not_claim_to_fill_grad():
    v = torch.ones(2, requires_grad=True)
    v.grad = torch.ones(2)
    with graphscope.record() as session:
        torch.autograd.grad((v * 4).sum(), v)
    text = str(session[0])
    assert "grad() computed [4, 4]" in text and "accumulated" not in text
    assert values(session[0].find("v").grad) == [1.0, 1.0]


def test_autograd_grad_of_a_named_non_leaf_shows_what_it_returned_for_it():
    w0 = torch.tensor([1.5, -2.0], requires_grad=True)
    w = w0 * 2
    b = torch.tensor([0.5], requires_grad=True)
    with graphscope.record() as session:
        loss = ((w * 3 + b) ** 2).sum()
        grad_w, grad_b = torch.autograd.grad(loss, (w, b))
    step = session[0]
    assert step.find("w").kind is NodeKind.TENSOR
    assert values(step.find("w").grad_step) == grad_w.tolist()
    assert values(step.find("b").grad_step) == grad_b.tolist()


def test_batched_grad_is_recorded_without_breaking_the_call():
    x = torch.randn(3, requires_grad=True)
    with graphscope.record() as session:
        (jacobian,) = torch.autograd.grad(x * 2, x, torch.eye(3), is_grads_batched=True)
    assert torch.equal(jacobian, 2 * torch.eye(3))
    assert len(session) == 1 and "is_grads_batched" in session[0].notes[0]


def test_gradients_sharing_memory_are_reduced_once_and_views_apart():
    from graphscope.capture.stats import grad_stats

    g = torch.tensor([[1.0, -2.0], [3.0, 4.0]])
    same, flat, transposed, row, copy = grad_stats([g, g.detach(), g.view(4), g.t(), g[1], g.clone()])[1:]
    first = grad_stats([g])[0]
    assert same is not None and same == first
    assert flat.values == tuple(g.view(4).tolist()) and flat.shape == (4,)
    assert transposed.values == tuple(g.t().reshape(-1).tolist()) and transposed.values != first.values
    assert row.values == (3.0, 4.0) and row.norm == pytest.approx(torch.linalg.norm(g[1]).item())
    assert copy == first


def test_a_leafs_grad_that_is_its_consumers_gradient_has_the_same_statistics():
    w = torch.tensor([0.5, -1.5], requires_grad=True)
    snap = graphscope.capture((w * 3.0).sum())
    leaf = snap.find("w")
    [edge] = [e for e in snap.edges if e.source == leaf.id]
    assert leaf.grad.values == edge.grad.values == leaf.grad_step.values == tuple(w.grad.tolist())


def test_an_output_given_twice_is_one_node_with_both_gradients():
    w = torch.tensor([2.0], requires_grad=True)
    loss = (w * 3).sum()
    with graphscope.record() as session:
        torch.autograd.backward([loss, loss], [torch.tensor(1.0), torch.tensor(2.0)])
    snap = session[0]
    (output,) = snap.of_kind("output")
    assert values(output.grad_step) == [3.0]
    assert [e.source for e in snap.edges if e.target == output.id] == [loss.grad_fn.name() + "_0"]
    assert values(snap.find("w").grad_step) == w.grad.tolist() == [9.0]
    assert any("output 1 is output 0 again" in note for note in snap.notes)


def test_a_failed_backward_claims_no_share_for_a_leaf_it_never_reached():
    """A backward that fails halfway (here on the freed graph of the step before) has sent
    part of w's gradient, but w's AccumulateGrad never ran: PyTorch leaves w.grad as it was,
    so the step shows no share for w, only its unchanged .grad."""
    w = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    h = torch.zeros(3)
    with graphscope.record(gradients="all") as session:
        for _ in range(2):
            h = torch.tanh(h + w)  # carried into the next step without detach
            loss = (h * w).sum()
            try:
                loss.backward()
            except RuntimeError as exc:
                assert "second time" in str(exc)
    assert len(session) == 2 and w.grad is not None
    first, failed = (next(n for n in s.of_kind(NodeKind.LEAF) if n.name == "w") for s in session.snapshots)
    assert first.grad_step is not None and failed.grad_step is None
    assert math.isclose(failed.grad.norm, w.grad.norm().item(), rel_tol=1e-6)
    assert math.isclose(first.grad_step.norm, w.grad.norm().item(), rel_tol=1e-6)


def test_an_edge_gradient_is_what_flowed_even_if_grad_is_later_added_to_in_place():
    """AccumulateGrad takes the gradient a transpose hands it as the weight's `.grad`; the
    GAN's next backward adds to that `.grad` in place. The edge into the transpose shows what
    flowed in step 0 (it showed the sum after step 1: 1.879 for PyTorch's 1.8755)."""
    from torch import nn

    torch.manual_seed(0)
    nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))  # the generator draws from the seed first
    discriminator = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1), nn.Sigmoid())
    real = torch.randn(16, 2) * 0.5 + 2.0
    loss = nn.BCELoss()(discriminator(real).view(-1), torch.full((16,), 1.0))
    expected = torch.autograd.grad(loss, discriminator[2].weight)[0].norm().item()
    run = record_script(str(EXAMPLES / "gan.py"))
    step = run[0]
    leaf = step.find("netD.main.2.weight")
    transpose = next(e.target for e in step.edges if e.source == leaf.id)
    [into] = [e for e in step.edges if e.source == transpose]
    assert math.isclose(into.grad.norm, expected, rel_tol=1e-6)


def test_cpu_gradients_are_reduced_in_small_batches_and_kept_statistics_match_pytorch():
    """CPU gradients wait for no device: the queue computes them every CPU_FLUSH_TENSORS (a
    batch of 4,096 cost twice as much per gradient, and its copies lived long enough to reach
    the collector's oldest generation); what `keep` queued reads back as PyTorch has it."""
    from graphscope.capture.stats import CPU_FLUSH_TENSORS, SMALL_TENSOR, StatsQueue

    torch.manual_seed(0)
    grads = [torch.randn(SMALL_TENSOR + 3) * (k + 1) for k in range(CPU_FLUSH_TENSORS + 50)]
    queue = StatsQueue()
    kept = []
    for grad in grads:
        kept.append(queue.keep(grad, copy=True))
        assert len(queue.entries) <= CPU_FLUSH_TENSORS
    queue.flush()
    for grad, index in zip(grads, kept):
        stat, exact = queue.kept_stat(index), grad.double()  # statistics are taken in float64
        assert (stat.norm, stat.mean, stat.min, stat.max) == pytest.approx(
            (exact.norm().item(), exact.mean().item(), exact.min().item(), exact.max().item()), rel=1e-9)
        assert stat.values is None
    assert queue.keep(None) == len(grads) and queue.kept_stat(len(grads)) is None


@pytest.mark.parametrize("shape", [(), (1,), (5,), (2, 3), (4, 16)])
def test_a_small_cpu_gradient_is_reduced_at_once_from_its_values(shape):
    """A small float gradient on the CPU has its statistics when it is kept, without a copy
    or a batch: what the queue says is the gradient as it was then, as PyTorch has it, even
    after the gradient is added to in place (as the next backward does to a leaf's .grad)."""
    from graphscope.capture.stats import StatsQueue

    torch.manual_seed(0)
    queue = StatsQueue()
    grad = torch.randn(shape, dtype=torch.float64 if len(shape) == 1 else torch.float32)
    exact = grad.double()  # statistics are taken in float64
    expected = (exact.norm().item(), exact.mean().item(), exact.min().item(), exact.max().item())
    values = grad.reshape(-1).tolist()
    index = queue.keep(grad, copy=True)
    assert queue.entries == []  # nothing waits for a batch
    grad.add_(1.0)
    stat = queue.kept_stat(index)
    assert (stat.shape, stat.numel, stat.nonfinite) == (shape, len(values), 0)
    assert (stat.norm, stat.mean, stat.min, stat.max) == pytest.approx(expected, rel=1e-12)
    assert stat.values == tuple(values)


def test_a_small_cpu_gradient_with_nan_is_counted_by_pytorchs_kernels():
    """A small gradient holding NaN or Inf is not reduced in Python: the batch counts them."""
    from graphscope.capture.stats import StatsQueue

    queue = StatsQueue()
    index = queue.keep(torch.tensor([1.0, float("nan"), float("inf")]), copy=True)
    assert len(queue.entries) == 1
    assert queue.kept_stat(index) is None  # not computed until the batch is
    queue.flush()
    assert queue.kept_stat(index).nonfinite == 2


def test_statistics_too_large_to_sum_are_written_as_the_numbers_they_are():
    """to_dict takes a shortcut when the sum of its four statistics is finite; a sum that
    overflows must not make finite statistics look like infinities."""
    from graphscope.model import GradStat

    huge = GradStat((2,), 2, 1.5e308, 1e308, 1e308, 1.7e308, 0, (1e308, 1.7e308))
    assert huge.to_dict() == {"max": 1.7e308, "mean": 1e308, "min": 1e308, "nonfinite": 0, "norm": 1.5e308,
                              "numel": 2, "shape": [2], "values": [1e308, 1.7e308]}
    odd = GradStat((2,), 2, math.inf, math.nan, -math.inf, math.inf, 2, (-math.inf, math.inf))
    assert odd.to_dict() == {"max": "inf", "mean": "nan", "min": "-inf", "nonfinite": 2, "norm": "inf",
                             "numel": 2, "shape": [2], "values": ["-inf", "inf"]}
