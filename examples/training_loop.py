"""A standard, correct training loop: nn.Module, Adam, zero_grad / backward / step.

Every step builds a fresh graph of the same size: x -> AddmmBackward0 -> ReluBackward0 ->
AddmmBackward0 -> MseLossBackward0, with the parameters named 0.weight, 0.bias, 2.weight,
2.bias. Nothing carries over from one step to the next except the parameter values.
"""
import torch
from torch import nn


def main():
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(64, 1)

    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    loss_fn = nn.MSELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)

    for step in range(20):
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 5 == 0:
            print(f"step {step}: loss = {loss.item():.4f}")

    with torch.no_grad():
        print(f"final loss = {loss_fn(model(x), y).item():.4f}")


if __name__ == "__main__":
    main()
