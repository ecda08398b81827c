"""An update rule by hand, without Ray or a model: DANA's master on a least-squares problem, its 4 workers
in round robin, each gradient computed at the point its worker was sent and applied one round later.

    python examples/api/rule_by_hand.py
"""

import torch

from dana_ray import make_algorithm

torch.manual_seed(0)
A, b = torch.randn(64, 8, dtype=torch.float64), torch.randn(64, dtype=torch.float64)


def gradient(x: torch.Tensor) -> torch.Tensor:
    return A.T @ (A @ x - b) / len(b)


def loss(x: torch.Tensor) -> float:
    return float(((A @ x - b) ** 2).mean() / 2)


N = 4
rule = make_algorithm("dana", params=torch.zeros(8, dtype=torch.float64), num_workers=N, lr=0.1, momentum=0.9)
sent = {i: rule.params_for(i) for i in range(N)}  # what worker i computes at (a fresh tensor)
sent_at = dict.fromkeys(range(N), 0)  # how many updates θ had then
start = loss(rule.params)
for step in range(400):
    i = step % N  # round robin: worker i's gradient arrives N - 1 updates after it was sent
    rule.apply(i, gradient(sent[i]), point=sent[i], delay=step - sent_at[i])
    sent[i], sent_at[i] = rule.params_for(i), step + 1

state = rule.state_dict()  # plain tensors and ints: a checkpoint restores the rule exactly
again = make_algorithm("dana", params=torch.zeros(8, dtype=torch.float64), num_workers=N, lr=0.1, momentum=0.9)
again.load_state_dict(state)
assert torch.equal(again.params, rule.params)
best = loss(torch.linalg.lstsq(A, b.unsqueeze(1)).solution.squeeze(1))
print(f"least squares with DANA, N = {N}: loss {start:.4f} -> {loss(rule.params):.4f} (the optimum: {best:.4f})")
