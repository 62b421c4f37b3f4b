"""A model too big to draw node by node: a 3-layer TransformerEncoder (d_model 16, 2 heads).

Its one training step has 168 autograd nodes, above the picture's budget of 150, so the
default picture is a view: each call of an attention block or a feed-forward linear is one
box (`model.layers.0.self_attn`, 28 ops) inside the cluster of its layer, a LayerNorm call,
one op, stays that op with its weight and bias, and the layers follow each other from top to
bottom. The legend says how much was folded;
`--depth 3` draws each layer as one box, `--full` draws all 168 nodes.
"""
import torch
from torch import nn

torch.manual_seed(0)
layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True)
model = nn.TransformerEncoder(layer, num_layers=3, enable_nested_tensor=False)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

tokens = torch.randn(2, 5, 16)  # a batch of 2 sequences of 5 tokens
target = torch.randn(2, 5, 16)
loss = (model(tokens) - target).pow(2).mean()
optimizer.zero_grad()
loss.backward()
optimizer.step()
print(f"loss = {loss.item():.4f}")
