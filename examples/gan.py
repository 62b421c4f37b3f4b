"""A small GAN trained the DCGAN way: a discriminator step on real and fake samples, then a
generator step. Without `--detach` the discriminator step scores `fake` without detaching it,
so its backward runs on into the generator and frees the graph the generator step needs."""

import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--detach", action="store_true", help="score fake.detach() in the discriminator step")
parser.add_argument("--retain", action="store_true", help="keep the graph in the discriminator's backward")
parser.add_argument("--keep-g-grads", action="store_true", help="do not zero the generator's gradients")
parser.add_argument("--iterations", type=int, default=3)
args = parser.parse_args()

torch.manual_seed(0)
NOISE, FEATURES, BATCH = 8, 2, 16


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(nn.Linear(NOISE, 16), nn.ReLU(), nn.Linear(16, FEATURES))

    def forward(self, z):
        return self.main(z)


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(nn.Linear(FEATURES, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1), nn.Sigmoid())

    def forward(self, x):
        return self.main(x)


netG, netD = Generator(), Discriminator()
criterion = nn.BCELoss()
optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
real_label, fake_label = 1.0, 0.0

for i in range(args.iterations):
    real = torch.randn(BATCH, FEATURES) * 0.5 + 2.0
    # (1) Update D: maximize log(D(x)) + log(1 - D(G(z)))
    netD.zero_grad()
    label = torch.full((BATCH,), real_label)
    output = netD(real).view(-1)
    errD_real = criterion(output, label)
    errD_real.backward()
    noise = torch.randn(BATCH, NOISE)
    fake = netG(noise)
    label.fill_(fake_label)
    if args.detach:
        output = netD(fake.detach()).view(-1)
    else:
        output = netD(fake).view(-1)
    errD_fake = criterion(output, label)
    errD_fake.backward(retain_graph=args.retain)
    optimizerD.step()
    # (2) Update G: maximize log(D(G(z)))
    if not args.keep_g_grads:
        netG.zero_grad()
    label.fill_(real_label)
    output = netD(fake).view(-1)
    errG = criterion(output, label)
    errG.backward()
    optimizerG.step()
    print(f"[{i}] Loss_D: {(errD_real + errD_fake).item():.4f} Loss_G: {errG.item():.4f}")
