"""A chain of 1,000,000 elementwise ops (or argv[1]) and one backward through it."""
import sys

import torch

ops = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
torch.set_num_threads(1)
x = torch.ones(4, requires_grad=True)
y = x
for _ in range(ops):
    y = y * 1.0000001
y.sum().backward()
print(f"x.grad after {ops:,} ops: {x.grad[0].item():.6f}")
