import argparse
import torch
from torch.utils.data import DataLoader, TensorDataset


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--context", default="fork")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 3), torch.randn(32, 1))
    loader = DataLoader(data, batch_size=8, num_workers=2, multiprocessing_context=args.context)
    w = torch.zeros(3, 1, requires_grad=True)
    for x, y in loader:
        loss = ((x @ w - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= 0.1 * w.grad
        w.grad = None
    print("done", w.flatten().tolist())


if __name__ == "__main__":
    main()
