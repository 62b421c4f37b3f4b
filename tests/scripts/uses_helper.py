"""A script that imports a module from its own folder and runs only under __main__."""

import torch

from helpers_module import make_loss

if __name__ == "__main__":
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    make_loss(w).backward()
    print("grad", w.grad.tolist())
