"""A compiled function that reads a tensor's value with .item(): dynamo breaks its graph there
(the op is traced through whatever torch-function mode is active, graphscope's included)."""

import torch

torch.manual_seed(0)
w = torch.randn(4, requires_grad=True)


@torch.compile(backend="aot_eager")
def scaled(x):
    y = (x * w).sum()
    s = y.item()
    return y * 2 if s > 0 else y * 3


for step in range(2):
    w.grad = None
    scaled(torch.randn(4)).backward()
    print(f"step {step} grad {w.grad.norm().item()!r}")
