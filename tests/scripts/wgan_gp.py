"""A WGAN-GP critic loop: each critic step makes its loss, then takes the gradient penalty with
torch.autograd.grad (a step of its own) before the backward that uses both."""
import torch
from torch import nn

torch.manual_seed(0)
G = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
D = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
opt_g = torch.optim.Adam(G.parameters(), lr=1e-3)
opt_d = torch.optim.Adam(D.parameters(), lr=1e-3)


def penalty(real, fake):
    alpha = torch.rand(real.size(0), 1)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    score = D(mixed)
    grads = torch.autograd.grad(score, mixed, torch.ones_like(score), create_graph=True)[0]
    return ((grads.norm(2, dim=1) - 1) ** 2).mean()


for iteration in range(12):
    for _ in range(3):
        real, fake = torch.randn(8, 2) + 2, G(torch.randn(8, 4)).detach()
        opt_d.zero_grad()
        d_loss = D(fake).mean() - D(real).mean()
        (d_loss + 10 * penalty(real, fake)).backward()
        opt_d.step()
    opt_g.zero_grad()
    (-D(G(torch.randn(8, 4))).mean()).backward()
    opt_g.step()
