"""A `torch.autograd.graph.GradientEdge` is accepted wherever an output tensor is: by trace,
capture, and a recording session's backward and grad calls. PyTorch is the reference."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.graph import get_gradient_edge

import graphscope


def test_trace_and_capture_take_a_gradient_edge():
    w = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    y = (w * 2).sin()
    traced = graphscope.trace(get_gradient_edge(y))
    assert [n.kind.value for n in traced.nodes] == ["output", "function", "function", "leaf"]
    output = traced.nodes[0]
    assert (output.name, output.op, output.shape, output.dtype) == ("y", "SinBackward0", (3,), "float32")
    snap = graphscope.capture(get_gradient_edge(y), gradient=torch.ones(3))
    expected = 2 * torch.cos(2 * w.detach())
    assert torch.equal(w.grad, expected)
    assert snap.find("w").grad.values == tuple(expected.tolist())
    assert snap.nodes[0].grad_step.values == (1.0, 1.0, 1.0)  # what backward started from


def test_a_recording_session_captures_backward_and_grad_of_gradient_edges():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    with graphscope.record() as session:
        z = (w * 3).exp()
        torch.autograd.backward([get_gradient_edge(z)], grad_tensors=[torch.ones(2)])
        (computed,) = torch.autograd.grad(get_gradient_edge((w * w).sum()), w, torch.tensor(1.0))
    assert len(session) == 2 and [s.call for s in session] == ["backward", "grad"]
    assert session[0].find("w").grad.values == tuple((3 * torch.exp(3 * w.detach())).tolist())
    assert session[1].find("w").grad_step.values == tuple(computed.tolist()) == (2.0, 4.0)


def test_the_gradient_edge_of_a_leaf_is_the_leaf():
    w = torch.ones(2, requires_grad=True)
    snap = graphscope.trace(get_gradient_edge(w))
    assert [n.kind.value for n in snap.nodes] == ["output", "leaf"]
    assert snap.nodes[0].is_leaf and "itself a leaf tensor" in snap.notes[0]


def test_anything_else_is_refused_with_a_clear_error():
    with pytest.raises(graphscope.GraphscopeError, match="not a torch.Tensor or GradientEdge"):
        graphscope.trace(3.0)
