"""A small network compiled with torch.compile, trained three epochs of two batches.

torch.compile hands the model to AOT autograd, which builds one backward graph for all of it:
the autograd graph holds a single CompiledFunctionBackward node between the loss and the four
parameters. graphscope draws it as one box, `compiled: net`, with how many aten ops its
backward graph has and the most frequent of them; in the report, clicking the box lists them
op by op. `net.compile()` compiles the module in place; `torch.compile(net)` returns a
compiled wrapper, and graphscope names the region after the variable that holds it. The
gallery uses the aot_eager backend, which needs no C compiler; with inductor, the default,
the box holds the backward graph inductor was handed.
"""
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 1)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


torch.manual_seed(0)
net = Net()
net.compile(backend="aot_eager")
optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
data = torch.randn(32, 4)
target = data.sum(dim=1, keepdim=True)

for epoch in range(3):
    for x, y in zip(data.split(16), target.split(16)):
        loss = nn.functional.mse_loss(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch}: loss = {loss.item():.4f}")
