"""The wrong update with the warning silenced by `w.retain_grad()`: the graph grows every step.

After `w = w - lr * w.grad` the new w is a non-leaf; retain_grad() makes w.grad appear again,
so the loop keeps running. But every loss's graph now contains the whole update history: a
chain of SubBackward0 nodes back to the original leaves, one longer each iteration, so the
graph (and the work of each backward) grows every iteration.
"""
import torch


def linear_model(x):
    return torch.mul(x, w) + b


def get_loss(my_pred, my_y_train):
    return torch.mean((my_pred - my_y_train) ** 2)


x_train = torch.tensor([[3.3], [4.4], [5.5], [6.71], [6.93], [4.168], [9.779], [6.182],
                        [7.59], [2.167], [7.042], [10.791], [5.313], [7.997], [3.1]],
                       dtype=torch.float32)
y_train = torch.tensor([[1.7], [2.76], [2.09], [3.19], [1.694], [1.573], [3.366], [2.596],
                        [2.53], [1.221], [2.827], [3.465], [1.65], [2.904], [1.3]],
                       dtype=torch.float32)

torch.manual_seed(2)
w = torch.randn(1, requires_grad=True)
b = torch.randn(1, requires_grad=True)
print(f"initial w = {w.item():.4f}, b = {b.item():.4f}")  # 0.3923, -0.2236

lr = 1e-3
for epoch in range(5):
    pred = linear_model(x_train)
    loss = get_loss(pred, y_train)
    loss.backward()
    w = w - lr * w.grad
    b = b - lr * b.grad
    w.retain_grad()
    b.retain_grad()
    print(f"epoch {epoch}: loss = {loss.item():.4f}, w = {w.item():.4f}, "
          f"w.is_leaf = {w.is_leaf}, w.grad_fn = {w.grad_fn}")
