"""A network whose forward pass picks at random how many of its hidden layers to run (a
stochastic-depth style model): the later layers get gradients in some steps only, by design."""

import random

import torch
from torch import nn

random.seed(0)
torch.manual_seed(0)


class RandomDepth(nn.Module):
    def __init__(self, width=8, depth=3):
        super().__init__()
        self.input = nn.Linear(1, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.output = nn.Linear(width, 1)

    def forward(self, x):
        h = torch.relu(self.input(x))
        for layer in self.hidden[: random.randint(0, len(self.hidden))]:
            h = torch.relu(layer(h))
        return self.output(h)


model = RandomDepth()
optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
x = torch.linspace(-1, 1, 32).unsqueeze(1)
y = x ** 3
for step in range(30):
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
print(f"loss {loss.item():.4f}")
