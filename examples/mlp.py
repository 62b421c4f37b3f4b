"""A 3-layer sigmoid MLP (8 -> 6 -> 4 -> 1) with BCELoss.

Like a Diabetes classifier, on 32 random samples. The graph shows three
AddmmBackward0/TBackward0/SigmoidBackward0 blocks ending in BinaryCrossEntropyBackward0, with
the parameters named linear1.weight ... linear3.bias.
"""
import torch
from torch import nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear1 = nn.Linear(8, 6)
        self.linear2 = nn.Linear(6, 4)
        self.linear3 = nn.Linear(4, 1)

    def forward(self, x):
        x = torch.sigmoid(self.linear1(x))
        x = torch.sigmoid(self.linear2(x))
        return torch.sigmoid(self.linear3(x))


torch.manual_seed(0)
x_data = torch.randn(32, 8)
y_data = (x_data.sum(dim=1, keepdim=True) > 0).float()  # a label the model can learn

model = Model()
criterion = nn.BCELoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

for epoch in range(5):
    y_pred = model(x_data)
    loss = criterion(y_pred, y_data)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(f"epoch {epoch}: loss = {loss.item():.4f}")
