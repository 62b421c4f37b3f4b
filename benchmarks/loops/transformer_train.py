"""A small transformer (2 encoder layers, d_model 32) trained with Adam for 200 steps (or argv[1])."""
import sys

import torch
from torch import nn

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
torch.set_num_threads(1)
torch.manual_seed(0)
tokens = torch.randn(8, 16, 32)
target = tokens.flip(1)

layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, batch_first=True)
model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for step in range(steps):
    loss = nn.functional.mse_loss(model(tokens), target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"loss after {steps} steps: {loss.item():.4f}")
