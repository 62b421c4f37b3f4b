"""A gradient of a gradient with torch.autograd.grad.

With create_graph=True the first gradient dy/dx = 2x = 6 is itself built by autograd (its
grad_fn is MulBackward0), so a second torch.autograd.grad can differentiate it: d(2x)/dx = 2.
The first step's graph shows y = x**2; the second shows the graph of the gradient itself.
"""
import torch

x = torch.tensor([3.0], requires_grad=True)
y = torch.pow(x, 2)

grad_1 = torch.autograd.grad(y, x, create_graph=True)  # dy/dx = 2x
print("grad_1:", grad_1)                                 # (tensor([6.], grad_fn=<MulBackward0>),)
print("grad_1[0].grad_fn:", grad_1[0].grad_fn)

grad_2 = torch.autograd.grad(grad_1[0], x)               # d(2x)/dx = 2
print("grad_2:", grad_2)                                 # (tensor([2.]),)
