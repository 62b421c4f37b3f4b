"""A small MLP compiled with torch.compile and trained three steps, as a user writes it.

    python compiled_mlp.py [BACKEND] [SAVE_TO]

BACKEND is aot_eager (the default) or inductor; SAVE_TO, if given, receives the final
parameters (torch.save), so a test can compare them with a plain run's.
"""

import sys

import torch
from torch import nn

backend = sys.argv[1] if len(sys.argv) > 1 else "aot_eager"
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
model = torch.compile(model, backend=backend)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(32, 4), torch.randn(32, 1)

for step in range(3):
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    print(f"step {step} loss {loss.item()!r}")

if len(sys.argv) > 2:
    torch.save([p.detach() for p in model.parameters()], sys.argv[2])
