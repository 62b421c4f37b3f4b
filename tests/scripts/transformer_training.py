"""A 6-layer TransformerEncoder classifier trained two steps with Adam, written as a user
writes one: the encoder under `self.encoder` with a linear head, the model held as `model`,
so graphscope names its parameters `model.encoder.layers.3.linear1.weight` and so on."""

import torch
from torch import nn

torch.manual_seed(0)
D_MODEL, HEADS, CLASSES = 32, 4, 3


class Classifier(nn.Module):
    """TransformerEncoder over a sequence, mean-pooled, then a linear head."""

    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=6, enable_nested_tensor=False)
        self.head = nn.Linear(D_MODEL, CLASSES)

    def forward(self, x):
        return self.head(self.encoder(x).mean(dim=1))


model = Classifier()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
x = torch.randn(4, 10, D_MODEL)
y = torch.randint(0, CLASSES, (4,))
for step in range(2):
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    print(f"step {step}: loss {loss.item():.4f}")
