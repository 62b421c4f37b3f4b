"""DDP training (gloo, CPU) whose auxiliary head helps at the first step only: from the
second step on the forward pass returns the main head alone, its parameters get no gradient,
and DDP stops the third step with "Expected to have finished reduction in the prior iteration"."""

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head = nn.Linear(8, 1)
        self.aux = nn.Linear(8, 1)

    def forward(self, x, warmup):
        h = torch.relu(self.body(x))
        if warmup:
            return self.head(h) + self.aux(h)
        return self.head(h)


def main():
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = DDP(Net())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    target = data.sum(dim=1, keepdim=True)
    for step in range(3):
        x, y = data[rank::world], target[rank::world]
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x, warmup=step == 0), y)
        loss.backward()
        optimizer.step()
        print(f"rank {rank} step {step} loss {loss.item()!r}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
