"""Linear regression from scratch, as the d2l book writes it: minibatches and a hand-written sgd().

Each minibatch of 10 gives a graph X -> MmBackward0 (with w) -> AddBackward0 (with b) ->
SubBackward0 -> PowBackward0 -> DivBackward0 -> SumBackward0. sgd() updates w and b in place
under torch.no_grad() (so the update is not recorded) and zeroes the grads; the grads are
divided by the batch size because the loss is summed, not averaged.
"""
import torch


def synthetic_data(w, b, num_examples):
    """Generate y = Xw + b + noise."""
    X = torch.normal(0, 1, (num_examples, len(w)))
    y = torch.matmul(X, w) + b
    y += torch.normal(0, 0.01, y.shape)
    return X, y.reshape((-1, 1))


def data_iter(batch_size, features, labels):
    num_examples = len(features)
    indices = torch.randperm(num_examples)  # read the examples in random order
    for i in range(0, num_examples, batch_size):
        batch_indices = indices[i: i + batch_size]
        yield features[batch_indices], labels[batch_indices]


def linreg(X, w, b):
    return torch.matmul(X, w) + b


def squared_loss(y_hat, y):
    return (y_hat - y.reshape(y_hat.shape)) ** 2 / 2


def sgd(params, lr, batch_size):
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad / batch_size
            param.grad.zero_()


torch.manual_seed(0)
true_w = torch.tensor([2, -3.4])
true_b = 4.2
features, labels = synthetic_data(true_w, true_b, 1000)

w = torch.normal(0, 0.01, size=(2, 1), requires_grad=True)
b = torch.zeros(1, requires_grad=True)

lr = 0.03
num_epochs = 3
batch_size = 10
net, loss = linreg, squared_loss

for epoch in range(num_epochs):
    for X, y in data_iter(batch_size, features, labels):
        l = loss(net(X, w, b), y)
        l.sum().backward()
        sgd([w, b], lr, batch_size)
    with torch.no_grad():
        train_l = loss(net(features, w, b), labels)
    print(f"epoch {epoch + 1}, loss {float(train_l.mean()):f}")

w_hat = w.reshape(-1).tolist()
print(f"estimated w = [{w_hat[0]:.4f}, {w_hat[1]:.4f}], true w = [2, -3.4]")
print(f"estimated b = {b.item():.4f}, true b = {true_b}")
