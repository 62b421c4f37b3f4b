"""A tensor that backward needs, changed in place after the forward pass (the version counter).

exp saves its result for backward (d exp(x)/dx = exp(x)), so `y += 1` afterwards changes the
value backward would use: loss.backward() fails with "one of the variables needed for gradient
computation has been modified by an inplace operation ... is at version 1; expected version 0"
(intended here). Run with --out-of-place for the fix: `y = y + 1` makes a new tensor instead.
"""
import argparse

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--out-of-place", action="store_true", help="write y = y + 1 instead of y += 1")
args = parser.parse_args()

x = torch.tensor([0.0, 1.0, 2.0], requires_grad=True)
y = torch.exp(x)
if args.out_of_place:
    y = y + 1
else:
    y += 1  # changes the tensor exp saved for backward
loss = y.sum()
loss.backward()
print("x.grad:", x.grad)  # exp(x) = [1.0000, 2.7183, 7.3891]
