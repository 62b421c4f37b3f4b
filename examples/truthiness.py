"""Testing a gradient for truth: the line fit of linear_fit.py, zeroing grads behind `if w.grad:`.

The notes test `if w.grad:` to skip zeroing on the first epoch, when w.grad is still None. It
runs here because w.grad has one element that is never exactly 0, but the test asks the wrong
question: a zero gradient counts as False, and a gradient with more than one element raises
"Boolean value of Tensor with more than one value is ambiguous". `if w.grad is not None:`
(see linear_fit.py) asks the right one.
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

lr = 1e-3
for epoch in range(10):
    pred = linear_model(x_train)
    loss = get_loss(pred, y_train)
    if w.grad:  # the lesson's test: None on the first epoch, but also False for a zero gradient
        w.grad.data.zero_()
    if b.grad:
        b.grad.data.zero_()
    loss.backward()
    w.data = w.data - lr * w.grad.data
    b.data = b.data - lr * b.grad.data
    print(f"epoch {epoch}: loss = {loss.item():.4f}, w.grad = {w.grad.item():.4f}")
