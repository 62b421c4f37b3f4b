"""Reading .grad of a non-leaf tensor gives None, with a warning.

a = x + w is computed from the leaves x and w, so backward() does not keep its gradient:
a.grad is None and PyTorch warns that a non-leaf's .grad is being accessed. Run with
--retain-grad for the fix: a.retain_grad() before backward() keeps it (a.grad = 2).
"""
import argparse

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--retain-grad", action="store_true", help="call a.retain_grad() before backward")
args = parser.parse_args()

w = torch.tensor([1.0], requires_grad=True)
x = torch.tensor([2.0], requires_grad=True)
a = torch.add(w, x)
b = torch.add(w, 1)
if args.retain_grad:
    a.retain_grad()
y = torch.mul(a, b)
y.backward()

print("w.grad:", w.grad)  # tensor([5.])
print("a.grad:", a.grad)  # None with a UserWarning; tensor([2.]) with --retain-grad
