"""An in-place update of a leaf outside no_grad: "a leaf Variable that requires grad is being used in an in-place operation".

`w -= lr * w.grad` outside torch.no_grad() asks autograd to record an in-place change to the
leaf whose .grad it fills, so PyTorch stops the script at that line (intended here). Run with
--no-grad for the fix: the same update inside `with torch.no_grad():`, as optimizers do it.
"""
import argparse

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--no-grad", action="store_true", help="update w under torch.no_grad()")
args = parser.parse_args()

x = torch.tensor([1.0, 2.0, 3.0])
y = torch.tensor([2.0, 4.0, 6.0])
w = torch.tensor([1.0], requires_grad=True)
lr = 0.01

for epoch in range(3):
    loss = ((x * w - y) ** 2).mean()
    loss.backward()
    if args.no_grad:
        with torch.no_grad():
            w -= lr * w.grad
    else:
        w -= lr * w.grad  # RuntimeError: a leaf Variable that requires grad ... in-place operation
    w.grad = None
    print(f"epoch {epoch}: loss = {loss.item():.4f}, w = {w.item():.4f}")
