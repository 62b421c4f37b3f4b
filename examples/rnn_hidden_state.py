"""Carrying an RNN's hidden state from batch to batch without detach().

Each batch's loss depends on h, which still holds the graph of every earlier batch, so the
graph of batch k contains the k batches before it: it grows every batch, and backward has
to be told retain_graph=True or the second batch fails. Run with --detach for the fix
(h = h.detach() at the start of each batch): every batch then has a graph of the same size.
The update goes through .data as in linear_fit.py: optimizer.step() would change the weights the
old graph saved, and the next backward through it would raise an in-place RuntimeError.
"""
import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--detach", action="store_true", help="detach h at the start of each batch")
args = parser.parse_args()

torch.manual_seed(0)
cell = nn.RNNCell(4, 8)
head = nn.Linear(8, 1)
params = list(cell.parameters()) + list(head.parameters())
lr = 0.05

inputs = torch.randn(4, 5, 3, 4)   # 4 batches of 5 time steps, 3 sequences, 4 features
targets = torch.randn(4, 3, 1)
h = torch.zeros(3, 8)

for batch in range(4):
    if args.detach:
        h = h.detach()  # the fix: cut the graph of the previous batches
    for t in range(5):
        h = cell(inputs[batch, t], h)
    loss = nn.functional.mse_loss(head(h), targets[batch])
    for p in params:
        p.grad = None
    loss.backward(retain_graph=True)
    for p in params:
        p.data = p.data - lr * p.grad.data
    print(f"batch {batch}: loss = {loss.item():.4f}")
