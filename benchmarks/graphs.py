"""The graphs every tool is measured on: each builder returns a fresh output tensor.

Builders are deterministic (fixed seeds) so that two calls give identical graphs: the
"fresh graph per measurement" timings depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

LEARNING_RATE = 1e-3


@dataclass(frozen=True)
class GraphSpec:
    """A named graph and the function that builds it."""

    label: str
    build: Callable[[], torch.Tensor]


def linear_fit() -> torch.Tensor:
    """Mean squared error of `x * w + b` on 15 points: 7 autograd nodes."""
    x, y = _line_data()
    w = torch.randn(1, requires_grad=True)
    b = torch.randn(1, requires_grad=True)
    return torch.mean((torch.mul(x, w) + b - y) ** 2)


def _line_data() -> tuple[torch.Tensor, torch.Tensor]:
    """15 points on a noisy line, the same every call."""
    torch.manual_seed(0)
    x = torch.linspace(0.0, 10.0, 15).unsqueeze(1)
    return x, 0.5 * x + 1.0 + 0.1 * torch.randn(15, 1)


def mlp(layers: int = 8) -> torch.Tensor:
    """MSE loss of a ReLU MLP with `layers` Linear layers of width 32."""
    torch.manual_seed(0)
    blocks: list[nn.Module] = []
    for _ in range(layers - 1):
        blocks += [nn.Linear(32, 32), nn.ReLU()]
    model = nn.Sequential(*blocks, nn.Linear(32, 1))
    return nn.functional.mse_loss(model(torch.randn(16, 32)), torch.randn(16, 1))


class _Block(nn.Module):
    """A residual block: x + conv(relu(conv(x)))."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output: its input plus the two convolutions."""
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


def resnet(convs: int = 20) -> torch.Tensor:
    """Cross-entropy of a ResNet-style net: a stem conv, residual blocks, a head conv."""
    torch.manual_seed(0)
    channels = 8
    model = nn.Sequential(
        nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(),
        *[_Block(channels) for _ in range((convs - 2) // 2)],
        nn.Conv2d(channels, 10, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
    return nn.functional.cross_entropy(model(torch.randn(2, 3, 16, 16)), torch.tensor([1, 7]))


def transformer(layers: int) -> torch.Tensor:
    """Mean square of a TransformerEncoder's output (d_model 32, 4 heads), batch 2 x 8 tokens."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, batch_first=True)
    model = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
    return model(torch.randn(2, 8, 32)).pow(2).mean()


def rnn(steps: int) -> torch.Tensor:
    """An RNNCell unrolled `steps` times; the weights are shared by every step."""
    torch.manual_seed(0)
    cell = nn.RNNCell(4, 8)
    inputs = torch.randn(steps, 3, 4)
    h = torch.zeros(3, 8)
    for t in range(steps):
        h = cell(inputs[t], h)
    return h.pow(2).mean()


def chain(ops: int) -> torch.Tensor:
    """`ops` multiplications in a row from one leaf: a graph as deep as it is large."""
    y = torch.ones(1, requires_grad=True)
    for _ in range(ops):
        y = y * 1.0000001
    return y


def wrong_update(steps: int, stop: Callable[[], bool] | None = None) -> tuple[torch.Tensor, int]:
    """The loss after `steps` of `w = w - lr * grad` (no no_grad): each update joins the graph.

    Gradients come from `torch.autograd.grad(loss, (w, b))`, which runs only the part of
    the graph down to the current w and b, so the plain loop stays near-linear and any
    growth in a recorded loop is the recorder's. `stop()`, asked after every step, ends
    the loop early; returns the last loss and the number of steps done.
    """
    x, y = _line_data()
    w = torch.randn(1, requires_grad=True)
    b = torch.randn(1, requires_grad=True)
    done = 0
    while done < steps and not (stop and stop()):
        loss = torch.mean((torch.mul(x, w) + b - y) ** 2)
        grad_w, grad_b = torch.autograd.grad(loss, (w, b))
        w = w - LEARNING_RATE * grad_w
        b = b - LEARNING_RATE * grad_b
        done += 1
    return torch.mean((torch.mul(x, w) + b - y) ** 2), done


def suite(quick: bool) -> list[GraphSpec]:
    """The graphs of the walk table; `quick` keeps the small ones and shrinks the deep ones."""
    rnn_steps = (100, 1_000) if quick else (100, 1_000, 5_000)
    layers = (6,) if quick else (6, 24)
    chain_ops = 20_000 if quick else 1_000_000
    wrong_steps = 1_000 if quick else 10_000
    return [
        GraphSpec("linear fit (15 points)", linear_fit),
        GraphSpec("MLP, 8 layers", mlp),
        GraphSpec("ResNet-style, 20 conv", resnet),
        *[GraphSpec(f"TransformerEncoder, {n} layers", lambda n=n: transformer(n)) for n in layers],
        *[GraphSpec(f"RNNCell unrolled {n:,} steps", lambda n=n: rnn(n)) for n in rnn_steps],
        GraphSpec(f"chain of {chain_ops:,} ops", lambda: chain(chain_ops)),
        GraphSpec(f"wrong-update loop, {wrong_steps:,} steps", lambda: wrong_update(wrong_steps)[0]),
    ]
