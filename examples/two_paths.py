"""Two paths to one leaf: y = (x + w) * (w + 1) reaches w along both.

PyTorch sums the gradients of both paths into w.grad (5), and a second backward through the
same graph (retain_graph=True) adds them again (10). `a.retain_grad()` keeps the gradient of
the non-leaf tensor a (2), which PyTorch would otherwise free.
"""
import torch

w = torch.tensor([1.0], requires_grad=True)
x = torch.tensor([2.0], requires_grad=True)

a = torch.add(w, x)
a.retain_grad()
b = torch.add(w, 1)
y = torch.mul(a, b)

y.backward(retain_graph=True)
print("w.grad after one backward:", w.grad)       # tensor([5.])
print("a.grad (retained):", a.grad)                 # tensor([2.])

y.backward()
print("w.grad after a second backward:", w.grad)  # tensor([10.]): accumulated
