"""Gradients never zeroed: the line fit of linear_fit.py without zeroing the grads.

backward() adds into w.grad, so w.grad grows (-0.5801, -1.1069, -1.5320) while the gradient
of each iteration's own loss does not (-0.5801, -0.5269, -0.4251). On the graph, compare the
gradient that reaches w's AccumulateGrad node with the w.grad shown after each step.
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
for i in range(3):
    pred = linear_model(x_train)
    loss = get_loss(pred, y_train)
    with torch.no_grad():
        grad = torch.mean(2 * (pred - y_train) * x_train)  # d loss / d w for this loss only
    loss.backward()  # no zero_() before: the new gradient is added to the old one
    w.data = w.data - lr * w.grad.data
    b.data = b.data - lr * b.grad.data
    print(f"iteration {i + 1}: w.grad = {w.grad.item():.4f}, "
          f"this iteration's gradient = {grad.item():.4f}, "
          f"w = {w.item():.4f}, b = {b.item():.4f}")
