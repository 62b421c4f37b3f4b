"""Mixed precision as torch.amp writes it: the forward pass under autocast (float16 here, on the
CPU), the loss scaled by a GradScaler before backward, the optimizer stepped through the scaler.

The scaler starts at a scale of 2^40 on purpose: the float16 gradients of the scaled loss
overflow, so the scaler finds Inf in them, skips the optimizer step and halves its scale, every
step until the gradients fit. That is loss scaling at work, not a bug: the doctor reports it as
information, and the pictures show the gradients unscaled (divided by the step's scale).
"""

import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40)
x, y = torch.randn(32, 8), torch.randn(32, 1)
for step in range(6):
    optimizer.zero_grad()
    with torch.autocast("cpu", dtype=torch.float16):
        loss = nn.functional.mse_loss(model(x), y)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    print(f"step {step}: loss {loss.item():.4f}, scale now {scaler.get_scale():.0f}")
