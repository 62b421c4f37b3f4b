"""The line fit updated by hand outside no_grad, zeroing the gradients right after the update:
the update rebinds w and b to non-leaf tensors, so `w.grad.zero_()` finds no gradient."""

import torch

torch.manual_seed(0)
x = torch.linspace(-1, 1, 15).unsqueeze(1)
y = 3 * x + 0.5
w = torch.randn(1, requires_grad=True)
b = torch.zeros(1, requires_grad=True)
lr = 0.1
for epoch in range(10):
    loss = ((x * w + b - y) ** 2).mean()
    loss.backward()
    b = b - lr * b.grad
    w = w - lr * w.grad
    b.grad.zero_()
    w.grad.zero_()
