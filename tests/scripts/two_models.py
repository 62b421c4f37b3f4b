"""Two models, two optimizers: the first backward of each step also reaches G, whose gradients
are cleared before its own backward; with --apply-stray, its optimizer steps first (after a
backward on real data that reaches D alone), applying what D's loss sent it."""
import sys

import torch
from torch import nn

torch.manual_seed(0)
G, D = nn.Linear(2, 2), nn.Linear(2, 1)
opt_g, opt_d = torch.optim.SGD(G.parameters(), lr=0.1), torch.optim.SGD(D.parameters(), lr=0.1)
for step in range(3):
    fake = G(torch.randn(4, 2))
    opt_d.zero_grad()
    D(fake).mean().backward(retain_graph=True)
    opt_d.step()
    opt_d.zero_grad()
    (-D(torch.randn(4, 2)).mean()).backward()
    opt_d.step()
    if "--apply-stray" in sys.argv:
        opt_g.step()
    opt_g.zero_grad()
    (-D(fake).mean()).backward()
    opt_g.step()
