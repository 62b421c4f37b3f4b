"""After a warm-up, the loss is computed at another line: the graph keeps its shape.

Once a loop is steady, graphscope stops stamping each op's file:line and takes the lines of
the step the graph repeats. Every step from 8 on makes `loss` at the second `mse_loss` line,
a graph of the same shape as before: the next step stamped to check the lines taken finds
the other line, so the steps that took the warm-up's line drop it (their notes say so), and
the steps after it are stamped with the line they were made at.
"""
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
warm_up = 8

for step in range(20):
    x = torch.randn(16, 3)
    target = x.sum(dim=1, keepdim=True)
    out = model(x)
    if step < warm_up:
        loss = nn.functional.mse_loss(out, target)
    else:  # after the warm-up: smoothed targets, computed at this line
        loss = nn.functional.mse_loss(out, 0.9 * target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"final loss: {loss.item():.4f}")
