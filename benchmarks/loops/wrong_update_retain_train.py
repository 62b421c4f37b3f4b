"""The wrong update kept running with retain_grad(), for 1,000 steps (or argv[1]): every update
joins the graph, so each backward runs through the whole update history, as in the lesson."""
import sys

import torch

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
torch.set_num_threads(1)
torch.manual_seed(2)
x = torch.linspace(-1, 1, 15).unsqueeze(1)
y = 2 * x + 0.3 + 0.1 * torch.randn(15, 1)
w = torch.randn(1, requires_grad=True)
b = torch.randn(1, requires_grad=True)
lr = 1e-3
for step in range(steps):
    loss = torch.mean((x * w + b - y) ** 2)
    loss.backward()
    w = w - lr * w.grad
    b = b - lr * b.grad
    w.retain_grad()
    b.retain_grad()
print(f"loss after {steps} steps: {loss.item():.4f}")
