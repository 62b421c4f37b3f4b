"""A parameter the optimizer updates but the forward pass never uses: its .grad stays None.

The model defines `skip` but forward() forgets to add it, so backward() never reaches
skip.weight and skip.bias and optimizer.step() leaves them as they were, every step, without
an error. Run with --use-all for the fix: forward() adds the skip connection.
"""
import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--use-all", action="store_true", help="use the skip layer in forward()")
args = parser.parse_args()


class Net(nn.Module):
    def __init__(self, use_all):
        super().__init__()
        self.hidden = nn.Linear(4, 8)
        self.out = nn.Linear(8, 1)
        self.skip = nn.Linear(4, 1)
        self.use_all = use_all

    def forward(self, x):
        y = self.out(torch.relu(self.hidden(x)))
        if self.use_all:
            y = y + self.skip(x)
        return y


torch.manual_seed(0)
x = torch.randn(16, 4)
target = torch.randn(16, 1)
model = Net(args.use_all)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

for step in range(3):
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), target)
    loss.backward()
    optimizer.step()
    print(f"step {step}: loss = {loss.item():.4f}, skip.weight.grad is None: {model.skip.weight.grad is None}")
