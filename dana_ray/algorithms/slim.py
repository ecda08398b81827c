"""DANA-Slim (Hakimi et al., "Taming Momentum in a Distributed Asynchronous Environment", arXiv 1907.11612):
DANA with the momentum moved to the workers, so the master keeps one vector and does plain SGD.

Derivation (why it is DANA). In DANA the master keeps θ and every v_j and sends x = θ - ηγ Σ_j v_j. Follow x
instead of θ. On worker i's gradient g (computed at the x it was sent), with a constant η:

    v_i' = γ v_i + g,   θ' = θ - η v_i',
    x'   = θ' - ηγ (Σ_j v_j - v_i + v_i')
         = x - η v_i' + ηγ v_i - ηγ v_i'
         = x - η (γ v_i' + g)              (since -η v_i' + ηγ v_i = -η g)

So x moves by the
worker's Nesterov-form update ``u = γ v_i' + g``, which only needs worker i's own momentum:

    worker i:  v_i <- γ v_i + g;   sends u = γ v_i + g
    master:    x <- x - η_t u;     sends x

The master's parameters are DANA's look-ahead point, and both rules send every worker the same points
(exactly with a constant η; with a schedule, DANA's look-ahead uses the next step's η and the two differ
slightly around each change). With N = 1 this is Nesterov momentum SGD, x being its iterate.

The worker-side state (one v_i per logical worker) is a :class:`WorkerMomentum`, which executors keep next
to the model replica that computes worker i's gradients and save with the trial's checkpoints.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dana_ray.algorithms.base import UpdateRule, register_rule
from dana_ray.algorithms.momentum import sgd_update


class WorkerMomentum:
    r"""Each logical worker's own momentum, on the worker side; turns a gradient into the update it sends:

        v_i <- γ v_i + g;   u = γ v_i + g

    Idempotent per job: computing worker i's batch b again (a job re-sent after a restore) starts again from
    the momentum before b. ``state_dict(next_batch)`` gives, per worker, the momentum as of just before the
    batch it will compute next, so a checkpoint is consistent with the master's outstanding jobs whether or
    not those jobs were already computed.
    """

    def __init__(self, momentum: float) -> None:
        self.momentum = float(momentum)
        self.velocity: dict[int, Tensor] = {}   # after the last batch computed
        self.previous: dict[int, Tensor] = {}   # before it
        self.last_batch: dict[int, int] = {}

    def update(self, worker: int, batch: int, grad: Tensor) -> Tensor:
        """Worker ``worker``'s update for its batch ``batch`` with gradient ``grad`` (a new tensor)."""
        if worker not in self.velocity:
            self.velocity[worker], self.previous[worker] = torch.zeros_like(grad), torch.zeros_like(grad)
            self.last_batch[worker] = batch - 1
        velocity, previous, last = self.velocity[worker], self.previous[worker], self.last_batch[worker]
        if batch == last:        # the same job again: start from the momentum before it
            velocity.copy_(previous)
        elif batch == last + 1:
            previous.copy_(velocity)
        else:
            raise ValueError(f"batch: worker {worker}'s momentum is at batch {last + 1}; got batch {batch}")
        self.last_batch[worker] = batch
        velocity.mul_(self.momentum).add_(grad)
        return grad.add(velocity, alpha=self.momentum)

    def state_dict(self, next_batch: dict[int, int]) -> dict[int, tuple[int, Tensor]]:
        """``{worker: (b, v_i before batch b)}`` for the workers in ``next_batch`` (worker -> b) held here."""
        state = {}
        for worker, batch in next_batch.items():
            if worker not in self.velocity:
                continue
            last = self.last_batch[worker]
            if batch not in (last, last + 1):
                raise ValueError(f"next_batch: worker {worker}'s momentum is at batch {last + 1}; asked for {batch}")
            state[worker] = (batch, (self.previous if batch == last else self.velocity)[worker].clone())
        return state

    def load_state_dict(self, state: dict[int, tuple[int, Tensor]]) -> None:
        """Hold exactly the workers in ``state``, each about to compute the batch saved with it."""
        self.velocity = {w: v.clone() for w, (_, v) in state.items()}
        self.previous = {w: v.clone() for w, (_, v) in state.items()}
        self.last_batch = {w: b - 1 for w, (b, _) in state.items()}


@register_rule("dana-slim")
class DANASlim(UpdateRule):
    r"""DANA-Slim: the master does SGD without momentum on the updates workers send,

        x <- x - η_t u      (u = γ v_i + g, computed by worker i with its own momentum v_i <- γ v_i + g)

    and sends every worker x. Same points as :class:`DANA` under a constant η (module docstring); the
    master's memory and work are those of plain SGD, O(d) whatever N. With master-side weight decay the
    master adds λx to the update it receives (the workers' momenta then carry no weight decay).
    """

    worker_side = WorkerMomentum
    single_worker_form = "nesterov"
    vectors_per_update = 2 + 1 + 2  # apply: read u, θ; write θ.  params_for: copy

    def _apply(self, worker: int, update: Tensor, lr: float, point: Tensor | None, delay: int) -> None:
        self._kernel(sgd_update)(self.params, update, lr=lr, weight_decay=self.weight_decay)
