"""An RNN cell trained on chunks with its hidden state carried over and backward(retain_graph=True):
the second chunk's backward runs into the first chunk's graph, whose weights optimizer.step()
changed in place since."""

import torch
from torch import nn

torch.manual_seed(0)
cell = nn.RNNCell(4, 8)
head = nn.Linear(8, 1)
optimizer = torch.optim.Adam(list(cell.parameters()) + list(head.parameters()), lr=1e-2)
data = torch.randn(3, 10, 5, 4)
target = torch.randn(3, 10, 5, 1)
h = torch.zeros(5, 8)
for chunk in range(3):
    optimizer.zero_grad()
    loss = 0.0
    for t in range(10):
        h = cell(data[chunk, t], h)
        loss = loss + ((head(h) - target[chunk, t]) ** 2).mean()
    loss.backward(retain_graph=True)
    optimizer.step()
    print(chunk, loss.item())
