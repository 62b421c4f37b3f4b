"""Code that makes torch trace or differentiate on its own: torch.export, torch.func.grad and
vmap, and non-reentrant activation checkpointing. Only the last makes a backward of its own."""

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
x = torch.randn(16, 4)

exported = torch.export.export(model, (x,))
print("export ops", len([n for n in exported.graph.nodes if n.op == "call_function"]))
print("exported module", exported.module()(x).sum().item())

params = dict(model.named_parameters())


def loss_fn(p, inputs):
    return torch.func.functional_call(model, p, (inputs,)).pow(2).mean()


grads = torch.func.grad(loss_fn)(params, x)
print("func.grad", {name: grad.norm().item() for name, grad in grads.items()})
per_sample = torch.func.vmap(torch.func.grad(loss_fn), in_dims=(None, 0))(params, x.unsqueeze(1))
print("vmap of grad", per_sample["0.weight"].sum().item())

loss = checkpoint(model, x, use_reentrant=False).pow(2).mean()
loss.backward()
print("checkpoint", model[0].weight.grad.norm().item())
