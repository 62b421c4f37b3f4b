"""Data-parallel training on CPU as a user writes it: torchrun starts one process per rank,
gloo connects them, a DistributedSampler gives each rank its share of the data, and DDP
averages the gradients.

    torchrun --nproc-per-node 2 ddp_train.py [SAVE_TO]

SAVE_TO, if given, receives each rank's final parameters (SAVE_TO.rank-K), so a test can
compare them with a plain run's.
"""

import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler


def main():
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = DDP(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    inputs = torch.randn(96, 4, generator=torch.Generator().manual_seed(1))
    data = TensorDataset(inputs, inputs.sum(dim=1, keepdim=True))
    loader = DataLoader(data, batch_size=16, sampler=DistributedSampler(data, shuffle=False))
    for step, (x, y) in enumerate(loader):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        print(f"rank {rank} step {step} loss {loss.item()!r}", flush=True)
    if len(sys.argv) > 1:
        torch.save([p.detach() for p in model.parameters()], f"{sys.argv[1]}.rank-{rank}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
