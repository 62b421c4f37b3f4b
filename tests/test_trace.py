"""Tracing: structure, names, kinds, errors, depth and memory, with PyTorch as the reference."""

from __future__ import annotations

import gc
import json
import tracemalloc
import weakref

import networkx as nx
import pytest
import torch
from torch import nn

import graphscope
from graphscope import GraphscopeError, NodeKind, Snapshot


def reference_walk(*outputs: torch.Tensor) -> tuple[dict[str, int], int]:
    """Op-name counts and edge count of the autograd graph, walked independently."""
    seen, stack, ops, edges = set(), [o.grad_fn for o in outputs], {}, set()
    while stack:
        fn = stack.pop()
        if fn in seen:
            continue
        seen.add(fn)
        name = fn.name().rsplit("::", 1)[-1]
        ops[name] = ops.get(name, 0) + 1
        for child, _ in fn.next_functions:
            if child is not None:
                edges.add((child, fn))
                stack.append(child)
    return ops, len(edges)


def two_paths():
    """y = (x + w) * (w + 1) with a.retain_grad(), as in the two-paths lesson."""
    w = torch.tensor([1.0], requires_grad=True)
    x = torch.tensor([2.0], requires_grad=True)
    a = torch.add(w, x)
    a.retain_grad()
    b = torch.add(w, 1)
    y = torch.mul(a, b)
    return w, x, a, b, y


def test_two_paths_structure_and_names():
    w, x, a, b, y = two_paths()
    snap = graphscope.trace(y)
    data = json.loads(snap.to_json())
    nodes = {n["id"]: n for n in data["nodes"]}
    leaves = sorted(n["name"] for n in nodes.values() if n["kind"] == "leaf")
    assert leaves == ["w", "x"]
    ops = sorted(n["op"] for n in nodes.values() if n["kind"] == "function")
    assert ops == ["AddBackward0", "AddBackward0", "MulBackward0"]
    tensor_a = next(n for n in nodes.values() if n["name"] == "a")
    assert tensor_a["kind"] == "tensor" and tensor_a["retains_grad"] is True and tensor_a["is_leaf"] is False
    output = [n for n in nodes.values() if n["kind"] == "output"]
    assert [o["name"] for o in output] == ["y"]
    assert data["graph"] == {"call": "backward", "format": 1, "notes": [], "step": 0}
    for node in nodes.values():
        assert set(node) >= {"id", "kind", "op", "name", "shape", "dtype", "is_leaf", "requires_grad", "retains_grad"}


def test_edges_follow_forward_data_flow():
    w, x, a, b, y = two_paths()
    snap = graphscope.trace(y)
    graph = snap.graph
    w_id, a_id, y_id = snap.find("w").id, snap.find("a").id, snap.find("y").id
    mul = next(n.id for n in snap.nodes if n.op == "MulBackward0" and n.kind is NodeKind.FUNCTION)
    assert graph.has_edge(a_id, mul) and graph.has_edge(mul, y_id)
    assert nx.has_path(graph, w_id, y_id)
    assert len(list(nx.all_simple_paths(graph, w_id, y_id))) == 2
    assert graph.in_degree(w_id) == 0 and graph.out_degree(y_id) == 0


def test_function_nodes_match_reference_walk():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    loss = model(torch.randn(5, 3)).pow(2).mean()
    snap = graphscope.trace(loss)
    ops, edge_count = reference_walk(loss)
    counts: dict[str, int] = {}
    for node in snap.nodes:
        if node.kind in (NodeKind.FUNCTION, NodeKind.LEAF):
            counts[node.op] = counts.get(node.op, 0) + 1
    assert counts == ops
    function_edges = [e for e in snap.edges if snap[e.source].kind is not NodeKind.OUTPUT
                      and snap[e.target].kind is not NodeKind.OUTPUT]
    assert len(function_edges) == edge_count


def test_module_parameters_get_their_dotted_path():
    class LinearModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(1, 1)

        def forward(self, x):
            return self.linear(x)

    model = LinearModel()
    loss = model(torch.ones(3, 1)).sum()
    snap = graphscope.trace(loss)
    names = {n.name for n in snap.of_kind("leaf")}
    assert names == {"model.linear.weight", "model.linear.bias"}
    assert snap.find("loss").kind is NodeKind.OUTPUT


class _Trainer:
    """A user's class holding the model, as training code often is."""

    def __init__(self):
        self.model = nn.Sequential(nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 1))
        self.scale = torch.tensor([2.0], requires_grad=True)

    def traced_step(self, x):
        loss = (self.model(x) * self.scale).sum()
        return graphscope.trace(loss)


def test_parameters_held_by_a_users_object_are_named_through_it():
    trainer = _Trainer()
    snap = trainer.traced_step(torch.randn(4, 3))
    leaves = {n.name for n in snap.of_kind(NodeKind.LEAF)}
    assert leaves == {"self.model.0.weight", "self.model.0.bias", "self.model.2.weight", "self.model.2.bias",
                      "self.scale"}
    assert {n for n, _ in trainer.model.named_parameters()} == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_explicit_names_dict_and_module():
    layer = nn.Linear(2, 1)
    out = layer(torch.ones(1, 2)).sum()
    by_module = graphscope.trace(out, names=layer)
    assert {n.name for n in by_module.of_kind("leaf")} == {"weight", "bias"}
    by_dict = graphscope.trace(out, names={"W": layer.weight, "result": out})
    assert {n.name for n in by_dict.of_kind("leaf")} == {"W", None}
    assert by_dict.find("result").kind is NodeKind.OUTPUT
    with pytest.raises(TypeError, match="names="):
        graphscope.trace(out, names=["not", "a", "mapping"])


def test_names_from_enclosing_function_frames():
    def forward(inp):
        hidden = inp * 3
        return hidden.sum()

    weights = torch.ones(2, requires_grad=True)
    snap = graphscope.trace(forward(weights))
    assert snap.find("weights").kind is NodeKind.LEAF


def test_multiple_outputs_and_shared_subgraph():
    x = torch.ones(3, requires_grad=True)
    shared = x * 2
    first, second = shared.sum(), shared.mean()
    snap = graphscope.trace(first, second)
    assert [n.name for n in snap.of_kind("output")] == ["first", "second"]
    assert len([n for n in snap.nodes if n.op == "MulBackward0" and n.kind is NodeKind.FUNCTION]) == 1


def test_leaf_as_output():
    w = torch.ones(2, requires_grad=True)
    snap = graphscope.trace(w)
    assert snap.find("w").kind is NodeKind.OUTPUT
    assert len(snap.of_kind("leaf")) == 1
    assert snap.notes


def test_same_input_twice_is_one_edge():
    x = torch.tensor([3.0], requires_grad=True)
    y = x * x
    snap = graphscope.trace(y)
    mul = next(n.id for n in snap.nodes if n.op == "MulBackward0" and n.kind is NodeKind.FUNCTION)
    assert [e.source for e in snap.edges if e.target == mul] == [snap.find("x").id]


@pytest.mark.parametrize("make, why", [
    (lambda: torch.ones(2), "requires_grad=False"),
    (lambda: torch.ones(2, requires_grad=True).detach() * 2, "requires_grad=False"),
])
def test_tensor_without_graph_is_a_clear_error(make, why):
    with pytest.raises(GraphscopeError, match=why):
        graphscope.trace(make())


def test_no_grad_output_is_a_clear_error():
    x = torch.ones(2, requires_grad=True)
    with torch.no_grad():
        y = x * 2
    with pytest.raises(GraphscopeError, match="no_grad"):
        graphscope.trace(y)


@pytest.mark.parametrize("bad", [3.0, [1, 2], None, "loss"])
def test_non_tensor_is_a_clear_error(bad):
    with pytest.raises(GraphscopeError, match="not a torch.Tensor"):
        graphscope.trace(bad)


def test_no_output_is_a_clear_error():
    with pytest.raises(GraphscopeError, match="at least one"):
        graphscope.trace()


def test_saved_tensors_and_freed_graph():
    x = torch.tensor([2.0], requires_grad=True)
    w = torch.tensor([3.0], requires_grad=True)
    y = (x * w).sum()
    snap = graphscope.trace(y, saved=True)
    saved = snap.of_kind("saved")
    assert sorted(n.op for n in saved) == ["other", "self"]
    assert sorted(n.name for n in saved) == ["w", "x"]
    y.backward()
    freed = graphscope.trace(y, saved=True)
    assert freed.of_kind("saved") == []
    assert any(n.saved_freed for n in freed.nodes)
    assert any("already freed" in note for note in freed.notes)


class _ScaledSquare(torch.autograd.Function):
    """x * x * y, saving both inputs for its own backward."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x * x * y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        return grad * 2 * x * y, grad * x * x


def test_saved_tensors_of_a_custom_function():
    x = torch.tensor([2.0, 1.0], requires_grad=True)
    scale = torch.tensor([3.0, 4.0], requires_grad=True)
    scaled = scale * 2
    y = _ScaledSquare.apply(x, scaled).sum()
    snap = graphscope.trace(y, saved=True)
    custom = next(n for n in snap.nodes if n.op == "_ScaledSquareBackward")
    feeding = {e.source for e in snap.edges if e.target == custom.id}
    saved = [n for n in snap.of_kind("saved") if n.id in feeding]
    assert [(n.op, n.name, n.shape) for n in saved] == [
        ("saved_tensors[0]", "x", (2,)), ("saved_tensors[1]", "scaled", (2,))]
    assert [t.tolist() for t in y.grad_fn.next_functions[0][0].saved_tensors] == [[2.0, 1.0], [6.0, 8.0]]
    y.backward()
    freed = graphscope.trace(y, saved=True)
    assert next(n for n in freed.nodes if n.op == "_ScaledSquareBackward").saved_freed


def test_snapshot_keeps_no_tensor_and_no_autograd_node():
    x = torch.randn(1000, 1000, requires_grad=True)
    y = (x * 2).sum()
    ref_x, ref_fn = weakref.ref(x), y.grad_fn
    snap = graphscope.trace(y)
    fn_ref = weakref.ref(y)
    del x, y, ref_fn
    gc.collect()
    assert ref_x() is None and fn_ref() is None
    stack = [snap]
    while stack:
        obj = stack.pop()
        assert not isinstance(obj, torch.Tensor) and "torch" not in type(obj).__module__
        if isinstance(obj, (tuple, list)):
            stack.extend(obj)
        elif isinstance(obj, Snapshot):
            stack.extend([obj.nodes, obj.edges, obj.notes])


def test_tracing_in_a_loop_does_not_grow_memory():
    w = torch.ones(4, requires_grad=True)

    def step():
        loss = (w * 2 + 1).sum()
        graphscope.trace(loss)

    for _ in range(200):
        step()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(10_000):
        step()
    gc.collect()
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    assert grown < 256 * 1024


def test_structural_ids_are_deterministic_and_address_free():
    def build():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
        out = model(torch.randn(2, 3)).sum()
        return graphscope.trace(out, names={"model": model, "out": out}).to_json()

    first, second = build(), build()
    assert first == second
    assert "0x" not in first


@pytest.mark.slow
def test_million_op_chain_has_no_recursion_error(tmp_path):
    x = torch.ones(1, requires_grad=True)
    y = x
    for _ in range(1_000_000):
        y = y * 1.0
    snap = graphscope.trace(y)
    assert len(snap.nodes) == 1_000_002
    path = graphscope.render(snap, tmp_path / "chain.json")
    assert path.stat().st_size > 1_000_000
    del y, snap
    gc.collect()


def test_naming_never_touches_the_users_namespaces():
    namespace: dict = {}
    exec("import torch, graphscope\na = torch.ones(2, requires_grad=True)\n"
         "graphscope.trace((a * 3).sum())\nafter = a + 1\n", {}, namespace)
    assert "after" in namespace and namespace["a"] is not None

    class Body:
        q = torch.ones(2, requires_grad=True)
        snap = graphscope.trace((q * 2).sum())
        r = q + 1

    assert Body.snap.find("q").kind is NodeKind.LEAF and Body.r.tolist() == [2.0, 2.0]

    def held_locals():
        w = torch.ones(2, requires_grad=True)
        env = locals()
        graphscope.capture((w * 2).sum())
        return sorted(env)

    assert held_locals() == ["env", "w"]


class _Logged(torch.Tensor):
    """A tensor subclass that notes every torch function called on it."""

    calls: list = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.calls.append(getattr(func, "__name__", str(func)))
        return super().__torch_function__(func, types, args, kwargs or {})


@pytest.mark.parametrize("capture", [graphscope.trace, graphscope.capture])
def test_walking_a_subclass_graph_runs_none_of_its_torch_function(capture):
    w = torch.ones(3, 2).as_subclass(_Logged).requires_grad_()
    loss = (w * 2).sum()
    _Logged.calls.clear()
    snap = capture(loss, names={"w": w, "loss": loss})
    assert _Logged.calls == ([] if capture is graphscope.trace else ["backward"])  # capture runs the user's backward
    grad = snap.find("w").grad
    assert grad is None if capture is graphscope.trace else list(grad.values) == w.grad.flatten().tolist()
    leaf, out = snap.find("w"), snap.find("loss")
    assert (leaf.shape, leaf.dtype, leaf.requires_grad, leaf.is_leaf) == (tuple(w.shape), "float32", True, True)
    assert out.shape == tuple(loss.shape) and type(loss) is _Logged


def test_tracing_under_a_torch_function_mode_runs_none_of_it():
    from torch.overrides import TorchFunctionMode

    class Counting(TorchFunctionMode):
        calls = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            Counting.calls += 1
            return func(*args, **(kwargs or {}))

    w = torch.ones(2, requires_grad=True)
    loss = (w * 3).sum()
    with Counting():
        snap = graphscope.trace(loss)
    assert Counting.calls == 0 and snap.find("w").shape == (2,) and snap.find("loss").op == "SumBackward0"


@pytest.mark.parametrize("reentrant", [True, False])
def test_a_reentrant_checkpoint_says_its_block_is_not_in_the_graph(reentrant):
    from torch.utils.checkpoint import checkpoint

    block = nn.Linear(3, 3)
    x = torch.randn(2, 3, requires_grad=True)
    y = checkpoint(block, x, use_reentrant=reentrant).sum()
    snap = graphscope.trace(y, names={"x": x, "block": block})
    leaves = {n.name for n in snap.of_kind(NodeKind.LEAF)}
    said = any("use_reentrant=False shows them" in note for note in snap.notes)
    if reentrant:
        assert said and leaves == {"x"}
    else:
        assert not said and leaves == {"x", "block.weight", "block.bias"}


def test_outputs_of_split_that_nothing_reads_are_not_in_the_graph():
    x = torch.randn(6, requires_grad=True)
    a, b, c = torch.split(x, 2)
    loss = (a * 3).sum() + (c ** 2).sum()
    snap = graphscope.trace(loss)
    names = {n.name for n in snap.nodes if n.name}
    assert {"a", "c", "x", "loss"} <= names and "b" not in names


def test_a_trace_keeps_what_the_graph_was_when_traced():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    b = torch.tensor([0.5], requires_grad=True)
    loss = (w * 3 + b).sum()
    snap = graphscope.trace(loss)
    w.requires_grad_(False)
    b.data = torch.zeros(4)
    leaves = {node.name: node for node in snap.of_kind(NodeKind.LEAF)}
    assert leaves["w"].requires_grad is True and leaves["w"].shape == (2,)
    assert leaves["b"].shape == (1,) and leaves["b"].dtype == "float32" and leaves["b"].device == "cpu"


def test_a_trace_equals_the_snapshot_a_capture_builds_at_once():
    from graphscope.capture.names import names_from_frames
    from graphscope.capture.walker import walk

    w = torch.randn(3, requires_grad=True)
    parts = torch.split(w * 2, 1)
    h = torch.tanh(parts[0] * w[:1])
    loss, other = (h * parts[2]).sum(), (h + w[1:2]).sum()
    h.retain_grad()
    traced = graphscope.trace(loss, other)
    built_at_once = walk([loss, other], names_from_frames(__import__("sys")._getframe(0))).freeze()
    assert traced == built_at_once
    assert [n.id for n in traced.nodes][:2] == ["output_0", "output_1"]
    assert traced.find("h").kind is NodeKind.TENSOR and traced.find("w").kind is NodeKind.LEAF


def test_a_trace_pickles_and_copies_like_its_records():
    import copy
    import pickle

    w = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = (w * 3).sum()
    traced = graphscope.trace(loss)
    assert pickle.loads(pickle.dumps(graphscope.trace(loss))) == traced
    assert copy.deepcopy(graphscope.trace(loss)) == traced == copy.copy(graphscope.trace(loss))


def test_threads_reading_one_trace_build_it_once():
    import threading

    chain = torch.ones(1, requires_grad=True)
    for _ in range(20_000):
        chain = chain * 1.0
    traced = graphscope.trace(chain)
    seen = []
    readers = [threading.Thread(target=lambda: seen.append((len(traced.nodes), len(traced.edges)))) for _ in range(4)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert seen == [(20_002, 20_001)] * 4


def test_a_first_read_that_is_interrupted_can_be_read_again(monkeypatch):
    from graphscope.capture import walker

    w = torch.randn(3, requires_grad=True)
    h = torch.tanh(w * 2)
    loss = (h * w + h.exp()).sum()
    traced, expected = graphscope.trace(loss), graphscope.trace(loss)
    real_edges, calls = walker.Pending._edges, []

    def interrupted_once(pending):
        calls.append(pending)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real_edges(pending)

    monkeypatch.setattr(walker.Pending, "_edges", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        traced.nodes
    assert traced == expected and traced.find("h").kind is NodeKind.TENSOR


def test_nodes_whose_class_has_no_name_of_its_own_are_named_one_by_one(monkeypatch):
    from graphscope.capture import walker

    w = torch.randn(3, requires_grad=True)
    loss = ((w * 2).exp() * w).sum()
    expected, unread = graphscope.trace(loss), graphscope.trace(loss)
    assert len(expected.nodes) == 6  # built before the change below
    mul_class = type(loss.grad_fn.next_functions[0][0])
    assert walker._NAME_OF_TYPE[mul_class] == "MulBackward0"
    monkeypatch.setitem(walker._NAME_OF_TYPE, mul_class, None)  # as for PyTorch's generic node wrapper
    assert graphscope.trace(loss) == expected
    assert unread == expected  # traced before, built after: a trace keeps the names it read
    assert [n.id for n in expected.of_kind("function")].count("MulBackward0_1") == 1
