"""REINFORCE as the policy-gradient examples write it, except that finish_episode() forgets to
empty the saved log-probs: the next episode's loss still holds the last episode's, whose graph its
backward freed."""

import torch
from torch import nn
from torch.distributions import Categorical

torch.manual_seed(0)


class Policy(nn.Module):
    def __init__(self):
        super().__init__()
        self.affine = nn.Linear(4, 16)
        self.head = nn.Linear(16, 2)
        self.saved_log_probs = []
        self.rewards = []

    def forward(self, x):
        return torch.softmax(self.head(torch.relu(self.affine(x))), dim=-1)


policy = Policy()
optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)


def select_action(state):
    probs = policy(state)
    m = Categorical(probs)
    action = m.sample()
    policy.saved_log_probs.append(m.log_prob(action))
    return action.item()


def finish_episode():
    returns, R = [], 0.0
    for r in policy.rewards[::-1]:
        R = r + 0.99 * R
        returns.insert(0, R)
    returns = torch.tensor(returns)
    policy_loss = [-log_prob * R for log_prob, R in zip(policy.saved_log_probs, returns)]
    optimizer.zero_grad()
    loss = torch.stack(policy_loss).sum()
    loss.backward()
    optimizer.step()
    del policy.rewards[:]   # the saved log-probs are never cleared


for episode in range(3):
    for t in range(5):
        action = select_action(torch.randn(4))
        policy.rewards.append(1.0 if action == 0 else 0.0)
    finish_episode()
    print("episode", episode)
