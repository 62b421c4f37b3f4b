"""Gradient accumulation over 4 micro-batches per optimizer step; with --forget, .grad is never
zeroed after optimizer.step(), so every update applies the sum of all earlier micro-batches."""
import sys

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
accumulate = 4
x, y = torch.randn(80, 6), torch.randint(0, 3, (80,))
optimizer.zero_grad()
for i in range(16):
    loss = nn.functional.cross_entropy(model(x[i * 5:(i + 1) * 5]), y[i * 5:(i + 1) * 5]) / accumulate
    loss.backward()
    if (i + 1) % accumulate == 0:
        optimizer.step()
        if "--forget" not in sys.argv:
            optimizer.zero_grad()
