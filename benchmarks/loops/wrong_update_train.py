"""A line fit by `w = w - lr * grad` outside no_grad for 1,000 steps (or argv[1]): every
update joins the graph, so step k's graph drags k updates along (autograd.grad keeps the
plain run linear)."""
import sys

import torch

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
torch.set_num_threads(1)
torch.manual_seed(0)
x = torch.randn(32)
y = 3 * x + 1
w = torch.randn(1, requires_grad=True)
b = torch.randn(1, requires_grad=True)
for step in range(steps):
    loss = ((w * x + b - y) ** 2).mean()
    grad_w, grad_b = torch.autograd.grad(loss, (w, b))
    w = w - 0.01 * grad_w
    b = b - 0.01 * grad_b
print(f"loss after {steps} steps: {loss.item():.4f}")
