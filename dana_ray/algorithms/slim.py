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

from dana_ray.algorithms.base import GradientAt, PerWorkerState, UpdateRule, WorkerSideState, register_rule
from dana_ray.algorithms.momentum import sgd_update


class WorkerMomentum:
    r"""DANA-Slim's worker side (a ``WorkerSide``): each logical worker's own momentum; turns the job's
    gradient g into the update it sends:

        v_i <- γ v_i + g;   u = γ v_i + g

    Idempotent per job and checkpointed as of each worker's next job (``PerWorkerState``).
    """

    local_steps = 1

    def __init__(self, momentum: float) -> None:
        self.momentum = float(momentum)
        self.state = PerWorkerState()

    def run(self, worker: int, job: int, point: Tensor, lr: float, gradient: GradientAt) -> Tensor:
        grad = gradient(point, 0)
        velocity = self.state.begin(worker, job, lambda: {"velocity": torch.zeros_like(grad)})["velocity"]
        velocity.mul_(self.momentum).add_(grad)
        return grad.add(velocity, alpha=self.momentum)

    def state_dict(self, next_job: dict[int, int]) -> WorkerSideState:
        return self.state.state_dict(next_job)

    def load_state_dict(self, state: WorkerSideState) -> None:
        self.state.load_state_dict(state)


@register_rule("dana-slim")
class DANASlim(UpdateRule):
    r"""DANA-Slim: the master does SGD without momentum on the updates workers send,

        x <- x - η_t u      (u = γ v_i + g, computed by worker i with its own momentum v_i <- γ v_i + g)

    and sends every worker x. Same points as :class:`DANA` under a constant η (module docstring); the
    master's memory and work are those of plain SGD, O(d) whatever N. With master-side weight decay the
    master adds λx to the update it receives (the workers' momenta then carry no weight decay).
    """

    single_worker_form = "nesterov"
    vectors_per_update = 2 + 1 + 2  # apply: read u, θ; write θ.  params_for: copy

    @classmethod
    def make_worker_side(cls, momentum: float, options: dict) -> WorkerMomentum:
        return WorkerMomentum(momentum)

    def _apply(self, worker: int, update: Tensor, lr: float, point: Tensor | None, delay: int) -> None:
        self._kernel(sgd_update)(self.params, update, lr=lr, weight_decay=self.weight_decay)
