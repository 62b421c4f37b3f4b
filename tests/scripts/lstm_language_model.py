"""A word-level LSTM language model as pytorch/examples writes it (clip_grad_norm_, a manual
SGD update), carrying its (h, c) state between chunks; without `--repackage` it forgets to
detach the state, and the second chunk's backward runs into the first chunk's freed graph."""

import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--repackage", action="store_true")
args = parser.parse_args()

torch.manual_seed(0)
VOCAB, EMBED, HIDDEN, BPTT, BATCH = 40, 12, 16, 10, 3


class RNNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Embedding(VOCAB, EMBED)
        self.rnn = nn.LSTM(EMBED, HIDDEN)
        self.decoder = nn.Linear(HIDDEN, VOCAB)

    def forward(self, tokens, hidden):
        output, hidden = self.rnn(self.encoder(tokens), hidden)
        return self.decoder(output), hidden


def repackage_hidden(h):
    return h.detach() if isinstance(h, torch.Tensor) else tuple(repackage_hidden(v) for v in h)


data = torch.randint(0, VOCAB, (BPTT * 3 + 1, BATCH))
model = RNNModel()
criterion = nn.CrossEntropyLoss()
hidden = (torch.zeros(1, BATCH, HIDDEN), torch.zeros(1, BATCH, HIDDEN))
for i in range(0, BPTT * 3, BPTT):
    if args.repackage:
        hidden = repackage_hidden(hidden)
    model.zero_grad()
    output, hidden = model(data[i:i + BPTT], hidden)
    loss = criterion(output.view(-1, VOCAB), data[i + 1:i + 1 + BPTT].reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
    for p in model.parameters():
        p.data.add_(p.grad, alpha=-1.0)
    print(f"chunk {i // BPTT}: loss {loss.item():.4f}")
