"""A small MLP (8 -> 32 -> 32 -> 1) trained with Adam for 1,000 steps (or argv[1] steps)."""
import sys

import torch
from torch import nn

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
torch.set_num_threads(1)
torch.manual_seed(0)
x = torch.randn(64, 8)
y = torch.sin(x.sum(dim=1, keepdim=True))

model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
for step in range(steps):
    loss = nn.functional.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"loss after {steps} steps: {loss.item():.4f}")
