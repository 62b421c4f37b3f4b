"""SGD by hand: fit y = x * w one sample at a time.

Each sample's loss (x*w - y)**2 gets its own small graph and its own backward; the graph
shows the single leaf w and MulBackward0 -> SubBackward0 -> PowBackward0. The update goes
through w.data and w.grad.data.zero_() clears the grad, so w stays a leaf with no history.
"""
import torch

x_data = [1.0, 2.0, 3.0]
y_data = [2.0, 4.0, 6.0]
w = torch.tensor([1.0], requires_grad=True)


def forward(x):
    return x * w


def loss(x, y):
    y_pred = forward(x)
    return (y_pred - y) ** 2


print("predict (before training): x = 4, y =", forward(4).item())
for epoch in range(100):
    for x, y in zip(x_data, y_data):
        l = loss(x, y)
        l.backward()
        w.data = w.data - 0.01 * w.grad.data
        w.grad.data.zero_()
    if epoch % 20 == 0:
        print(f"epoch {epoch}: last loss = {l.item():.6f}, w = {w.item():.4f}")

print(f"w after training = {w.item():.4f}")
print(f"predict (after training): x = 4, y = {forward(4).item():.4f}")
