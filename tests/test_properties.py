"""Properties over random graphs, and transparency: graphscope must not change what a script computes."""

from __future__ import annotations

import gc
import weakref

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import graphscope
from graphscope import NodeKind, Snapshot

from conftest import run_graphscope

UNARY = {"exp": torch.exp, "tanh": torch.tanh, "neg": torch.neg, "square": torch.square}
BINARY = {"add": torch.add, "mul": torch.mul, "sub": torch.sub}


def reference_structure(output: torch.Tensor) -> tuple[dict[str, int], set[tuple[int, int]]]:
    """Op counts and edges (as walk positions) from an independent walk of `next_functions`."""
    order, index, stack, edges = [], {}, [output.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn in index:
            continue
        index[fn] = len(order)
        order.append(fn)
        stack.extend(child for child, _ in reversed(fn.next_functions) if child is not None)
    for fn in order:
        for child, _ in fn.next_functions:
            if child is not None:
                edges.add((index[child], index[fn]))
    ops: dict[str, int] = {}
    for fn in order:
        name = fn.name().rsplit("::", 1)[-1]
        ops[name] = ops.get(name, 0) + 1
    return ops, edges


programs = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(sorted(UNARY)), st.integers(0, 20), st.just(0)),
        st.tuples(st.sampled_from(sorted(BINARY)), st.integers(0, 20), st.integers(0, 20)),
    ),
    min_size=1, max_size=15,
)


def build(program, seed: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Leaves and the scalar output of a random composition of ops."""
    torch.manual_seed(seed)
    leaves = [torch.randn(2, requires_grad=True) for _ in range(3)]
    values = list(leaves)
    for op, i, j in program:
        a, b = values[i % len(values)], values[j % len(values)]
        values.append(UNARY[op](a) * 0.5 if op in UNARY else BINARY[op](a, b))
    return leaves, values[-1].sum()


@settings(max_examples=40, deadline=None)
@given(program=programs, seed=st.integers(0, 1000))
def test_random_graphs_match_a_reference_walk_and_round_trip(program, seed):
    leaves, out = build(program, seed)
    snap = graphscope.trace(out, names={})
    ops, edges = reference_structure(out)
    counts: dict[str, int] = {}
    for node in snap.nodes:
        if node.kind in (NodeKind.FUNCTION, NodeKind.LEAF):
            counts[node.op] = counts.get(node.op, 0) + 1
    assert counts == ops
    functions = [n.id for n in snap.nodes if n.kind in (NodeKind.FUNCTION, NodeKind.LEAF)]
    position = {node_id: i for i, node_id in enumerate(functions)}
    inner = {(position[e.source], position[e.target]) for e in snap.edges
             if e.source in position and e.target in position}
    assert inner == edges
    again = Snapshot.from_json(snap.to_json())
    assert again == snap and again.to_json() == snap.to_json()
    assert graphscope.diff(snap, snap).empty


@settings(max_examples=25, deadline=None)
@given(program=programs, seed=st.integers(0, 1000))
def test_captured_gradients_equal_pytorchs(program, seed):
    leaves, out = build(program, seed)
    snap = graphscope.capture(out, names={f"p{k}": leaf for k, leaf in enumerate(leaves)})
    reference_leaves, reference_out = build(program, seed)
    reference_out.backward()
    for k, leaf in enumerate(reference_leaves):
        node = next((n for n in snap.nodes if n.name == f"p{k}"), None)
        if node is None:
            assert leaf.grad is None
            continue
        assert list(node.grad.values) == leaf.grad.tolist()


def test_capture_frees_the_users_tensors_like_plain_backward():
    big = torch.randn(2000, 2000, requires_grad=True)
    loss = (big * 2).sum()
    graphscope.capture(loss)
    refs = [weakref.ref(big), weakref.ref(loss)]
    del big, loss
    gc.collect()
    assert [r() for r in refs] == [None, None]


def test_a_finished_session_is_freed_as_soon_as_nothing_holds_it():
    """A session in a reference cycle waits for a full garbage collection with every record it
    holds: a notebook that drops a long recording keeps it, and a process pays to scan it."""
    x = torch.ones(2, requires_grad=True)
    with graphscope.record() as session:
        (torch.nn.Linear(2, 1)(x) * 3).sum().backward()
    assert session.sites and len(session) == 1
    alive = weakref.ref(session)
    gc.disable()
    try:
        del session
        assert alive() is None
    finally:
        gc.enable()


def test_what_torch_caches_of_the_patched_backward_holds_no_session():
    """torch caches objects by the names it reads them from (dynamo's map of torch functions is
    built from `torch.autograd.backward` and friends, whenever it is first needed): a stand-in
    read while a session records must not keep that session and its records alive."""
    x = torch.ones(2, requires_grad=True)
    with graphscope.record() as session:
        cached = (torch.autograd.backward, torch.autograd.grad)
        (x * 3).sum().backward()
    alive = weakref.ref(session)
    del session
    gc.collect()
    assert alive() is None
    assert len(cached) == 2


def test_a_session_leaves_no_patch_and_no_hook_behind():
    before = (torch.autograd.backward, torch.autograd.grad, torch.Tensor.backward)
    x = torch.ones(2, requires_grad=True)
    y = (x * 3).sum()
    with graphscope.record() as session:
        y.backward(retain_graph=True)
    assert (torch.autograd.backward, torch.autograd.grad, torch.Tensor.backward) == before
    assert not torch.overrides._get_current_function_mode_stack()
    calls = []
    y.grad_fn.register_prehook(lambda grad: calls.append(1))
    y.backward()
    assert calls == [1] and len(session) == 1


TRAIN = """
import sys, torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
data, target = torch.randn(32, 4), torch.randn(32, 1)
for _ in range(15):
    opt.zero_grad()
    loss = nn.functional.mse_loss(model(data), target)
    loss.backward()
    opt.step()
torch.save({k: v for k, v in model.state_dict().items()}, sys.argv[1])
print("loss", loss.item().hex(), "next random", torch.rand(1).item().hex())
"""


def test_render_does_not_change_what_the_script_computes(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    plain = subprocess.run([sys.executable, str(script), str(tmp_path / "plain.pt")],
                           capture_output=True, text=True, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    traced = run_graphscope("render", str(script), str(tmp_path / "traced.pt"), "-o", str(tmp_path / "out"))
    assert plain.returncode == traced.returncode == 0, traced.stderr
    assert plain.stdout == traced.stdout
    first, second = torch.load(tmp_path / "plain.pt"), torch.load(tmp_path / "traced.pt")
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_a_long_session_frees_every_step_and_keeps_only_compact_records():
    import tracemalloc

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    data = torch.randn(16, 4)
    losses = []
    tracemalloc.start()
    with graphscope.record() as session:
        for step in range(300):
            if step == 50:
                gc.collect()
                before = tracemalloc.get_traced_memory()[0]
                nodes_before = sum(len(s.nodes) for s in session.snapshots)
            opt.zero_grad()
            loss = model(data).pow(2).mean()
            loss.backward()
            opt.step()
            losses.append(weakref.ref(loss))
            del loss
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert all(ref() is None for ref in losses)
    nodes = sum(len(s.nodes) for s in session.snapshots) - nodes_before
    assert grown / nodes < 4096, f"{grown / nodes:.0f} bytes per captured node"
