"""Logistic regression with BCELoss and SGD(momentum=0.9).

Two Gaussian clusters of 100 points each. The graph shows features.weight and features.bias
feeding AddmmBackward0 -> SigmoidBackward0 -> SqueezeBackward0 -> BinaryCrossEntropyBackward0.
"""
import torch
from torch import nn

torch.manual_seed(1)
sample_nums = 100
mean_value = 1.7
bias = 1
n_data = torch.ones(sample_nums, 2)
x0 = torch.normal(mean_value * n_data, 1) + bias   # class 0
y0 = torch.zeros(sample_nums)
x1 = torch.normal(-mean_value * n_data, 1) + bias  # class 1
y1 = torch.ones(sample_nums)
train_x = torch.cat((x0, x1), 0)
train_y = torch.cat((y0, y1), 0)


class LR(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Linear(2, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return self.sigmoid(self.features(x))


lr_net = LR()
loss_fn = nn.BCELoss()
optimizer = torch.optim.SGD(lr_net.parameters(), lr=0.01, momentum=0.9)

for iteration in range(20):
    y_pred = lr_net(train_x)
    loss = loss_fn(y_pred.squeeze(), train_y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    if iteration % 5 == 0 or iteration == 19:
        print(f"iteration {iteration}: loss = {loss.item():.4f}")

with torch.no_grad():
    mask = lr_net(train_x).ge(0.5).float().squeeze()
acc = (mask == train_y).float().mean().item()
print(f"accuracy = {acc:.2%}")
w0, w1 = lr_net.features.weight[0].tolist()
print(f"w0 = {w0:.4f}, w1 = {w1:.4f}, b = {lr_net.features.bias.item():.4f}")
