"""The line fit: pred = w*x + b fitted to 15 points with MSE, the right way.

The graph of one iteration has leaves x, w, b and the chain MulBackward0 -> AddBackward0 ->
SubBackward0 -> PowBackward0 -> MeanBackward0; w and b are leaves that receive .grad.
Grads are zeroed before each backward and the update goes through .data, so the graph of
every iteration has the same shape.
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
for epoch in range(10):
    pred = linear_model(x_train)
    loss = get_loss(pred, y_train)
    if w.grad is not None:  # not `if w.grad:` (see truthiness.py)
        w.grad.zero_()
    if b.grad is not None:
        b.grad.zero_()
    loss.backward()
    w.data = w.data - lr * w.grad.data
    b.data = b.data - lr * b.grad.data
    print(f"epoch {epoch}: loss = {loss.item():.4f}, w.grad = {w.grad.item():.4f}, "
          f"b.grad = {b.grad.item():.4f}")

print(f"final w = {w.item():.4f}, b = {b.item():.4f}")
print("w.is_leaf:", w.is_leaf, " w.grad_fn:", w.grad_fn)
