"""A custom autograd.Function: a clamp whose backward lets the gradient through unchanged
(a straight-through estimator), next to torch.clamp, whose gradient is zero where it clamps.

Its backward node is named after the class (ClampThroughBackward) and sits in the graph like
any PyTorch op. `graphscope render examples/custom_function.py --saved` also shows what its
forward kept for backward with ctx.save_for_backward (saved_tensors[0], the input x).
"""
import torch


class ClampThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(-1.0, 1.0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.ones_like(x)  # straight through, clamped or not


x = torch.tensor([-2.0, 0.5, 3.0], requires_grad=True)
through = ClampThrough.apply(x)
clamped = torch.clamp(x, -1.0, 1.0)
loss = (through * 2).sum() + (clamped * 3).sum()
loss.backward()
print("x.grad:", x.grad)  # tensor([2., 5., 2.]): 2 everywhere, plus 3 where clamp let x through
