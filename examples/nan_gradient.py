"""A NaN gradient out of a finite forward: the Euclidean distance sqrt(sum((p - t)**2)) at 0.

The first prediction equals its target, so its distance is sqrt(0) = 0 and the loss is finite.
In backward, SqrtBackward0 sends grad / (2 * sqrt(0)) = inf, and PowBackward0 multiplies it
by 2 * (p - t) = 0: inf * 0 = nan, which lands in pred.grad for that row. The graph shows the
edge where inf first appears and the one where it turns into nan.
(torch.linalg.vector_norm defines this gradient as 0 and avoids the NaN.)
"""
import torch

pred = torch.tensor([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]], requires_grad=True)
target = torch.tensor([[1.0, 2.0], [0.0, 0.0], [0.0, 1.0]])

dist = torch.sqrt(((pred - target) ** 2).sum(dim=1))
loss = dist.mean()
print("dist:", dist)   # tensor([0., 5., 1.])
print("loss:", loss)   # tensor(2.): finite

loss.backward()
print("pred.grad:", pred.grad)  # first row is nan
print("any nan in pred.grad:", pred.grad.isnan().any().item())
