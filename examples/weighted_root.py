"""Backward from a non-scalar root with gradient weights.

loss = cat([y0, y1]) has two elements, so backward needs gradient=[1., 2.]: the graph shows
CatBackward0 at the root sending 1 to y0 = (x+w)*(w+1) and 2 to y1 = (x+w)+(w+1).
w.grad = 1 * dy0/dw + 2 * dy1/dw = 1 * 5 + 2 * 2 = 9.
"""
import torch

w = torch.tensor([1.0], requires_grad=True)
x = torch.tensor([2.0], requires_grad=True)

a = torch.add(w, x)
b = torch.add(w, 1)
y0 = torch.mul(a, b)  # dy0/dw = 5
y1 = torch.add(a, b)  # dy1/dw = 2

loss = torch.cat([y0, y1], dim=0)
loss.backward(gradient=torch.tensor([1.0, 2.0]))
print("loss:", loss)
print("w.grad:", w.grad)  # tensor([9.])
print("x.grad:", x.grad)  # 1 * b + 2 * 1 = tensor([4.])
