"""Backward twice through one graph: calling y.backward() a second time without retain_graph=True.

The first backward frees the tensors that MulBackward0 saved (a and b), so the second one
fails with RuntimeError "Trying to backward through the graph a second time". This failure
is intended; with y.backward(retain_graph=True) the first time (see two_paths.py) it works.
"""
import torch

w = torch.tensor([1.0], requires_grad=True)
x = torch.tensor([2.0], requires_grad=True)

a = torch.add(w, x)
b = torch.add(w, 1)
y = torch.mul(a, b)

y.backward()
print("w.grad after the first backward:", w.grad)  # tensor([5.])
y.backward()  # RuntimeError: the saved a and b were freed by the first backward
print("not reached")
