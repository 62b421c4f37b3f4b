"""Summing each step's loss tensor for a report keeps every step's graph alive.

`total_loss += loss` adds the loss *tensor*, so total_loss is computed from every step's loss
and holds on to all their graphs (and the tensors they saved) until the end of training: memory
grows with every step, though each backward() itself is fine. The fix is
`total_loss += loss.item()`, which adds a Python number.
"""
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Linear(3, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
x = torch.randn(8, 3)
y = torch.randn(8, 1)

total_loss = 0.0
for step in range(5):
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    total_loss += loss  # keeps this step's graph alive
print("mean loss:", total_loss / 5)  # a tensor with a grad_fn: every step's graph is still there
