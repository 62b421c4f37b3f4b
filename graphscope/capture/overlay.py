"""Gradient capture: what flowed along each edge during one backward, and what accumulated.

Hooks go on the autograd nodes of a `Walk` just before the real backward runs and are
removed right after it, also when it fails. Their own torch calls run with torch-function
handling off, so the source-tracking mode neither sees nor pays for them, and only on
detached gradients, so they record nothing even under create_graph. Gradients wait in a
`StatsQueue` and their statistics are computed in batches, across steps, on their own device
(graphscope.capture.stats); the queue is bounded, so memory stays bounded.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch

from graphscope.model.history import Key
from graphscope.capture.distributed import averaged_across_ranks
from graphscope.capture.stats import StatsQueue
from graphscope.capture.walker import Walk
from graphscope.model import NodeKind



def _sum(grads: list[torch.Tensor | None]) -> torch.Tensor | None:
    """Sum of the gradients that are present, detached (so it records nothing even under
    create_graph); None when none is."""
    present = [g.detach() for g in grads if g is not None]
    if not present:
        return None
    total = present[0]
    for g in present[1:]:
        total = total + g
    return total


class _Recorder:
    """Receives the node hooks of one backward call and keeps statistics, not tensors."""

    def __init__(self, walk: Walk, queue: StatsQueue, leaves_only: bool = False):
        walk.build()
        self.walk = walk
        self.queue = queue
        self.handles: list[Any] = []
        self.leaf_sums: dict[int | Key, torch.Tensor] = {}  # a node, or an earlier step's leaf
        self.accumulated: set[int | Key] = set()
        count = 0 if leaves_only else len(walk.functions)  # only the leaves' hooks run: no edge to index
        self.slot_edges: list[list[tuple[int, tuple[int, ...]]]] = [[] for _ in range(count)]
        self.leaf_slots: list[list[tuple[int, int]]] = [[] for _ in range(count)]
        self.produced: list[list[tuple[int, int]]] = [[] for _ in range(count)]
        if not leaves_only:
            self._index(walk)

    def _index(self, walk: Walk) -> None:
        """Per autograd node: its incoming edges by input slot, leaves it feeds, edges it produces."""
        first, nodes = walk.first_function, walk.nodes
        for edge, ((source, target), slots) in enumerate(zip(walk.edges, walk.edge_slots())):
            if slots is None or target < first:
                continue
            self.slot_edges[target - first].append((edge, slots))
            if nodes[source].kind is NodeKind.LEAF and source >= first:
                self.leaf_slots[target - first].extend((slot, source) for slot in slots)
        for fi, nr, edge in walk.produced:
            self.produced[fi].append((nr, edge))

    def needs_hook(self, fi: int) -> bool:
        """Every function needs its hook, for what it sends to its inputs. A leaf's
        AccumulateGrad needs one only where what it receives can differ from what its
        consumers sent (a hook on the leaf tensor may change it) or is drawn on an output:
        otherwise the consumers' hooks tell its share."""
        node = self.walk.first_function + fi
        if self.walk.nodes[node].kind is not NodeKind.LEAF or self.produced[fi]:
            return True
        return bool(getattr(self.walk.tensors.get(node), "_backward_hooks", None))

    def hook_for(self, fi: int) -> Callable[[tuple, tuple], None]:
        """The post-hook of autograd node number `fi` of the walk."""

        def hook(grad_inputs: tuple, grad_outputs: tuple) -> None:
            with torch._C.DisableTorchFunction():
                self.record(fi, grad_inputs, grad_outputs)

        return hook

    def record(self, fi: int, grad_inputs: tuple, grad_outputs: tuple) -> None:
        """Edge gradients into node `fi` (by input slot) and out of it (by output number).

        A leaf's share of this step is the sum of what its consumers sent, unless its
        AccumulateGrad runs (backward, not autograd.grad): then it is what AccumulateGrad
        received, after any hooks on the leaf tensor, i.e. exactly what went into `.grad`."""
        edge_grad = self.walk.edge_grad
        for edge, slots in self.slot_edges[fi]:
            self.defer(edge_grad, edge, _sum([grad_inputs[s] for s in slots]), copy=True)
        for nr, edge in self.produced[fi]:
            if nr < len(grad_outputs):
                self.defer(edge_grad, edge, grad_outputs[nr], copy=True)
        for slot, leaf in self.leaf_slots[fi]:
            self.add_share(leaf, grad_inputs[slot])
        leaf = self.walk.first_function + fi
        if self.walk.nodes[leaf].kind is NodeKind.LEAF and grad_outputs and grad_outputs[0] is not None:
            self.accumulated_into(leaf, grad_outputs[0])

    def add_share(self, leaf: Any, grad: torch.Tensor | None) -> None:
        """Add what one consumer sent to a leaf (a node, or an earlier step's leaf by its key)
        to the leaf's share of this step, unless its AccumulateGrad already told the share."""
        if grad is not None and leaf not in self.accumulated:
            previous = self.leaf_sums.get(leaf)
            self.leaf_sums[leaf] = grad.detach().clone() if previous is None else previous + grad.detach()

    def accumulated_into(self, leaf: Any, grad: torch.Tensor) -> None:
        """What a leaf's AccumulateGrad received: exactly its share of this step."""
        self.accumulated.add(leaf)
        self.leaf_sums[leaf] = grad.detach().clone()

    def returned(self, inputs: Any, grads: tuple) -> None:
        """What `autograd.grad` returned for its `inputs` (a tensor or a sequence, in the order
        of `grads`): for a named non-leaf input, what flowed into it (the engine stops there,
        so its producer's hook never runs)."""
        node_of = {id(tensor): node for node, tensor in self.walk.tensors.items()
                   if self.walk.nodes[node].kind in (NodeKind.TENSOR, NodeKind.LEAF)}
        deep = {node: key for key, node in self.walk.deep_leaves.items()}
        for tensor, grad in zip([inputs] if isinstance(inputs, torch.Tensor) else inputs, grads):
            node = node_of.get(id(tensor))
            if node is None or grad is None:
                continue
            if self.walk.nodes[node].kind is NodeKind.TENSOR:
                self.defer(self.walk.node_grad_step, node, grad, copy=True)
            elif deep.get(node, node) not in self.leaf_sums:  # a light capture hooked no consumer
                self.accumulated_into(deep.get(node, node), grad)

    def defer(self, store: dict, key: Any, grad: torch.Tensor | None, copy: bool = False) -> None:
        """Queue a gradient for the next batch of statistics, which go to `store[key]`. What a
        hook hands over is copied: AccumulateGrad may take that very tensor (or a view of it)
        as a leaf's `.grad`, which DDP averages in place during the backward, and clipping or
        unscaling changes afterwards, before the batch is computed."""
        self.queue.put(store, key, grad, copy)

    def finish(self, failed: bool = False) -> None:
        """After the call: queue the stored `.grad` of leaves and retained tensors (copied: the
        next backward adds to a `.grad` in place), and each leaf's share of this step (copies
        already). After a failed call, a share summed from consumers is only part of what was
        coming and nothing reached the leaf: only what an AccumulateGrad received is kept.
        Across DDP ranks no share is kept: `.grad` holds the ranks' average, not this share,
        and a share beside it would read as a gradient never zeroed."""
        walk = self.walk
        averaged = averaged_across_ranks()
        for leaf, grad in self.leaf_sums.items():
            if averaged or (failed and leaf not in self.accumulated):
                continue
            if isinstance(leaf, int):
                self.defer(walk.node_grad_step, leaf, grad)
            else:
                self.defer(walk.deep_grads, ("step", leaf), grad)
        for node, tensor in walk.tensors.items():
            self.defer(walk.node_grad, node, _stored_grad(tensor), copy=True)
        self.leaf_sums.clear()


def _stored_grad(tensor: torch.Tensor) -> torch.Tensor | None:
    """`.grad` of a leaf or a retained tensor; None (without PyTorch's warning) otherwise."""
    if tensor.is_leaf or tensor.retains_grad:
        return tensor.grad
    return None


class _History:
    """Follows the gradient into history that earlier steps captured and this walk stopped at:
    an earlier node is hooked when its consumer runs, so this costs what the backward does."""

    def __init__(self, walk: Walk, recorder: _Recorder):
        self.walk = walk
        self.recorder = recorder
        self.hooked: set[Key] = set(walk.refs.values())
        self.tensor_keys = {(key, nr) for _, key, nr in walk.tensor_keys}
        first = walk.first_function
        after_functions = first + len(walk.functions)
        self.deep_tensors = {(key, nr): node for node, key, nr in walk.tensor_keys if node >= after_functions}
        self.local_leaves = {key: first + fi for fi, key in walk.refs.items() if walk.nodes[first + fi].kind is NodeKind.LEAF}

    def follow(self, fn: Any, key: Key) -> None:
        """Hook an earlier step's function: record what it sends to its inputs, hook those."""

        def hook(grad_inputs: tuple, grad_outputs: tuple) -> None:
            with torch._C.DisableTorchFunction():
                self.record(fn, key, grad_inputs, grad_outputs)

        self.hooked.add(key)
        self.recorder.handles.append(fn.register_hook(hook))

    def watch_leaf(self, fn: Any, key: Key) -> None:
        """Hook an earlier step's leaf: what its AccumulateGrad receives, when it runs."""

        def hook(_: tuple, grad_outputs: tuple) -> None:
            if grad_outputs and grad_outputs[0] is not None:
                with torch._C.DisableTorchFunction():
                    self.recorder.accumulated_into(key, grad_outputs[0])

        self.hooked.add(key)
        self.recorder.handles.append(fn.register_hook(hook))

    def record(self, fn: Any, key: Key, grad_inputs: tuple, grad_outputs: tuple) -> None:
        """Gradients out of one earlier function, grouped by the node they reach, as history keys."""
        grads = self.walk.deep_grads
        for nr, grad in enumerate(grad_outputs):
            if (key, nr) in self.deep_tensors:
                self.recorder.defer(grads, ("out", key, nr), grad)
        groups: dict[Any, list[torch.Tensor | None]] = {}
        leaves = set()
        for slot, (child, nr) in enumerate(fn.next_functions):
            child_key = None if child is None else child.metadata.get(self.walk.at_key)
            if child_key is None:
                continue
            source = (child_key, nr) if (child_key, nr) in self.tensor_keys else child_key
            groups.setdefault(source, []).append(grad_inputs[slot])
            is_leaf = hasattr(child, "variable")
            if is_leaf:
                leaves.add(source)
                self.recorder.add_share(self.local_leaves.get(child_key, child_key), grad_inputs[slot])
            if child_key not in self.hooked:
                (self.watch_leaf if is_leaf else self.follow)(child, child_key)
        for source, slot_grads in groups.items():
            self.recorder.defer(grads, (source, key), _sum(slot_grads), copy=source in leaves)

def _accumulator(tensor: torch.Tensor) -> Any:
    """The AccumulateGrad node of a leaf tensor."""
    return tensor.view_as(tensor).grad_fn.next_functions[0][0]


def _hook_leaves(walk: Walk, recorder: _Recorder) -> None:
    """Hook only what each leaf receives: the leaves of this walk, and the session's leaves
    deep in the history it stopped at (a light capture records no per-edge gradient)."""
    first = walk.first_function
    for fi, fn in enumerate(walk.functions):
        if walk.nodes[first + fi].kind is NodeKind.LEAF:
            recorder.handles.append(fn.register_hook(_leaf_hook(recorder, first + fi)))
    for key, node in walk.deep_leaves.items():
        recorder.handles.append(_accumulator(walk.tensors[node]).register_hook(_leaf_hook(recorder, key)))


def _leaf_hook(recorder: _Recorder, leaf: int | Key) -> Callable[[tuple, tuple], None]:
    """The post-hook of a leaf's AccumulateGrad: its share of this step."""

    def hook(_: tuple, grad_outputs: tuple) -> None:
        if grad_outputs and grad_outputs[0] is not None:
            with torch._C.DisableTorchFunction():
                recorder.accumulated_into(leaf, grad_outputs[0])

    return hook


@contextlib.contextmanager
def hooked(walk: Walk, queue: StatsQueue, leaves_only: bool = False) -> Iterator[_Recorder]:
    """Hook every node of `walk` for the duration of the block, then remove the hooks; where
    the walk stopped at an earlier step's nodes, hooks follow the gradient into that history.
    With `leaves_only`, only what each leaf receives is recorded. Like the walk, hooking and
    reading the results run no `__torch_function__`."""
    recorder = _Recorder(walk, queue, leaves_only)
    history = _History(walk, recorder) if walk.stopped_early and not leaves_only else None
    try:
        with torch._C.DisableTorchFunction():
            if leaves_only:
                _hook_leaves(walk, recorder)
            for fi, fn in enumerate(walk.functions if not leaves_only else ()):
                if recorder.needs_hook(fi):
                    recorder.handles.append(fn.register_hook(recorder.hook_for(fi)))
                if history is not None and fi in walk.refs and not hasattr(fn, "variable"):
                    history.follow(fn, walk.refs[fi])
        yield recorder
    except BaseException:
        failed = True
        raise
    else:
        failed = False
    finally:
        for handle in recorder.handles:
            handle.remove()
        with torch._C.DisableTorchFunction():
            recorder.finish(failed)
