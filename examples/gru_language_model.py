"""A GRU language model trained with truncated backpropagation through time, written the way
the word-language-model examples write it: the hidden state is carried from one chunk of 35
tokens to the next. Without `--repackage` the script forgets to detach it, so the second
chunk's backward runs into the first chunk's graph, which the first backward freed."""

import argparse

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--repackage", action="store_true", help="detach the hidden state between chunks")
parser.add_argument("--chunks", type=int, default=2)
args = parser.parse_args()

torch.manual_seed(0)
VOCAB, EMBED, HIDDEN, BPTT, BATCH = 50, 16, 32, 35, 4


class RNNModel(nn.Module):
    """Embedding -> GRU -> linear decoder over the vocabulary."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Embedding(VOCAB, EMBED)
        self.rnn = nn.GRU(EMBED, HIDDEN)
        self.decoder = nn.Linear(HIDDEN, VOCAB)

    def forward(self, tokens, hidden):
        emb = self.encoder(tokens)
        output, hidden = self.rnn(emb, hidden)
        return self.decoder(output), hidden

    def init_hidden(self, batch):
        return torch.zeros(1, batch, HIDDEN)


def repackage_hidden(h):
    """Wrap hidden states in new tensors, to detach them from their history."""
    return h.detach() if isinstance(h, torch.Tensor) else tuple(repackage_hidden(v) for v in h)


data = torch.randint(0, VOCAB, (BPTT * args.chunks + 1, BATCH))
model = RNNModel()
criterion = nn.CrossEntropyLoss()
lr = 0.5
hidden = model.init_hidden(BATCH)
for i in range(0, BPTT * args.chunks, BPTT):
    inputs, targets = data[i:i + BPTT], data[i + 1:i + 1 + BPTT]
    if args.repackage:
        hidden = repackage_hidden(hidden)
    model.zero_grad()
    output, hidden = model(inputs, hidden)
    loss = criterion(output.view(-1, VOCAB), targets.reshape(-1))
    loss.backward()
    for p in model.parameters():
        p.data.add_(p.grad, alpha=-lr)
    print(f"chunk {i // BPTT}: loss {loss.item():.4f}")
