"""The line fit with nn.Module, MSELoss and SGD.

The graph names the parameters by module path (linear.weight, linear.bias) and shows
nn.Linear as AddmmBackward0 with a TBackward0 on the weight. optimizer.zero_grad() clears
the grads before each backward, optimizer.step() updates them in place.
"""
import torch
from torch import nn


class LinearModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, x):
        return self.linear(x)


torch.manual_seed(0)
x_data = torch.tensor([[1.0], [2.0], [3.0]])
y_data = torch.tensor([[2.0], [4.0], [6.0]])

model = LinearModel()
criterion = nn.MSELoss(reduction="sum")
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

for epoch in range(100):
    y_pred = model(x_data)
    loss = criterion(y_pred, y_data)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if epoch % 20 == 0 or epoch == 99:
        print(f"epoch {epoch}: loss = {loss.item():.4f}")

print(f"w = {model.linear.weight.item():.4f}")
print(f"b = {model.linear.bias.item():.4f}")
print(f"y_pred at x = 4: {model(torch.tensor([[4.0]])).item():.4f}")
