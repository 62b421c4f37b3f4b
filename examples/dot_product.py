"""The gradient of a dot product: y = 2 * dot(x, x) with x = arange(4.).

The graph is x -> DotBackward0 -> MulBackward0; the gradient that reaches x is 4x = [0, 4, 8, 12].
"""
import torch

x = torch.arange(4.0, requires_grad=True)
y = 2 * torch.dot(x, x)
print("y:", y)  # tensor(28., grad_fn=<MulBackward0>)

y.backward()
print("x.grad:", x.grad)                   # tensor([ 0.,  4.,  8., 12.])
print("x.grad == 4 * x:", x.grad == 4 * x)
