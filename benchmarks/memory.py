"""What a long recording keeps: the bytes a session holds per captured node, by tracemalloc."""

from __future__ import annotations

import gc
import tracemalloc
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

import graphscope

from benchmarks import report

WARMUP = 10  # steps recorded before measuring: first-call allocations are not the session's


@dataclass(frozen=True)
class MemoryRow:
    """One recorded loop: steps measured, records the session keeps for them, bytes it grew by."""

    label: str
    steps: int
    nodes: int
    edges: int
    grown: int


def _training(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, lr: float) -> Callable[[int], None]:
    """`n` steps of mean-square-error training with Adam, a call."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def run(steps: int) -> None:
        for _ in range(steps):
            loss = nn.functional.mse_loss(model(inputs), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return run


def mlp_loop() -> Callable[[int], None]:
    """The 1,000-step MLP script's training loop (8 -> 32 -> 32 -> 1, Adam)."""
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
    return _training(model, x, torch.sin(x.sum(dim=1, keepdim=True)), lr=1e-2)


def transformer_loop() -> Callable[[int], None]:
    """The 200-step transformer script's training loop (2 encoder layers, d_model 32, Adam)."""
    torch.manual_seed(0)
    tokens = torch.randn(8, 16, 32)
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    return _training(model, tokens, tokens.flip(1), lr=1e-3)


def measure(label: str, loop: Callable[[int], None], steps: int) -> MemoryRow:
    """Record WARMUP steps, then `steps` more while tracemalloc counts what stays allocated."""
    with graphscope.record() as session:
        loop(WARMUP)
        gc.collect()
        tracemalloc.start()
        loop(steps)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    kept = [partial.snapshot for partial in session._partials[-steps:]]  # the records each step stored
    return MemoryRow(label, steps, sum(len(s.nodes) for s in kept), sum(len(s.edges) for s in kept), grown)


def suite(quick: bool) -> list[MemoryRow]:
    """The two training loops of the script table."""
    mlp_steps, transformer_steps = (100, 20) if quick else (2_000, 200)
    return [measure("MLP training loop", mlp_loop(), mlp_steps),
            measure("transformer training loop", transformer_loop(), transformer_steps)]


def markdown(rows: list[MemoryRow]) -> str:
    """The memory table with a note on how it was measured."""
    body = [[row.label, report.count(row.steps), report.count(row.nodes), report.count(row.edges),
             f"{row.grown / row.nodes:,.0f} B", f"{row.grown / row.steps / 1024:,.1f} KiB"] for row in rows]
    return "\n\n".join([
        "## What a recording keeps",
        f"`graphscope.record()` around a loop: {WARMUP} steps first, then the steps shown while "
        "`tracemalloc` counts the memory still allocated after them (after a garbage collection): "
        "the session's records, since every tensor and autograd node of a step is freed with it. "
        "Nodes and edges are the records the session stores for those steps (node and edge "
        "records, each with its gradient statistics and, for gradients of up to 64 values, the "
        "values themselves).",
        report.table(("loop", "steps", "node records", "edge records", "bytes per node", "per step"), body),
    ])
