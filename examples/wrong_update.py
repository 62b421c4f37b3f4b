"""The wrong update: `w = w - lr * w.grad` (no .data, no no_grad).

The update is recorded by autograd: the new w is no longer a leaf (is_leaf False, grad_fn
SubBackward0) and the next loss's graph reaches the original leaf through the update.
In the second iteration w.grad is None (PyTorch warns about reading .grad of a non-leaf), so
`lr * w.grad` raises TypeError. This failure is intended: it is the bug the lesson runs into.
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
for epoch in range(3):
    pred = linear_model(x_train)
    loss = get_loss(pred, y_train)
    loss.backward()
    print(f"epoch {epoch}: before update w.is_leaf = {w.is_leaf}, w.grad_fn = {w.grad_fn}")
    w = w - lr * w.grad  # epoch 1: w.grad is None here -> TypeError
    b = b - lr * b.grad
    print(f"epoch {epoch}: after update  w.is_leaf = {w.is_leaf}, w.grad_fn = {w.grad_fn}")
