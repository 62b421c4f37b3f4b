"""An RNN cell unrolled by hand over 20 time steps, then one backward.

The same four parameters (`cell.weight_ih`, `cell.weight_hh` and their biases) are used at
every step. Drawn once, each would pull an edge across the whole picture and make it four
thousand points wide; graphscope draws a weight again beside each use (`cell.weight_hh
(use 3 of 20)`), every copy with the same `.grad`, so the picture stays one column of time
steps, read from top (the first step) to bottom, and the gradient reaching each step's
input is on its edge: it shrinks towards the first steps.
"""
import torch
from torch import nn

torch.manual_seed(0)
cell = nn.RNNCell(input_size=8, hidden_size=16)
readout = nn.Linear(16, 1)
inputs = torch.randn(20, 4, 8)  # 20 time steps, a batch of 4
h = torch.zeros(4, 16)
for x in inputs:
    h = cell(x, h)
loss = readout(h).pow(2).mean()
loss.backward()
print(f"loss = {loss.item():.4f}")
