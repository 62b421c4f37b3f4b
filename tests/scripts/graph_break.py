"""A compiled training step that prints from inside, so torch.compile splits it in two."""

import torch

torch.manual_seed(0)


@torch.compile(backend="aot_eager")
def train_step(w, x):
    h = (x @ w).tanh()
    print("inside the compiled step")
    return (h * h).mean()


w = torch.randn(4, 3, requires_grad=True)
x = torch.randn(8, 4)
for step in range(2):
    loss = train_step(w, x)
    loss.backward()
    with torch.no_grad():
        w -= 0.1 * w.grad
    w.grad = None
    print(f"step {step} loss {loss.item()!r}")
