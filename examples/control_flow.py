"""Python control flow decides the shape of the graph.

The while loop runs as long as the data says, so with a = 2 the graph is a chain of 9
MulBackward0 nodes (a*2, then 8 doublings up to 1024). d = 512 * a, so a.grad = 512 = d / a.
The lesson draws a = torch.randn(size=()); it is fixed to 2.0 here for a reproducible graph.
"""
import torch


def f(a):
    b = a * 2
    while b.norm() < 1000:
        b = b * 2
    if b.sum() > 0:
        c = b
    else:
        c = 100 * b
    return c


a = torch.tensor(2.0, requires_grad=True)
d = f(a)
print("d:", d)  # tensor(1024., grad_fn=<MulBackward0>)

d.backward()
print("a.grad:", a.grad)                   # tensor(512.)
print("a.grad == d / a:", a.grad == d / a)
