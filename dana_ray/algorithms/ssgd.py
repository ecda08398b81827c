"""Synchronous SGD: one momentum step per round of one gradient from every worker."""

from __future__ import annotations

from torch import Tensor

from dana_ray.algorithms.base import LearningRate, UpdateRule
from dana_ray.algorithms.momentum import momentum_update_


class SSGD(UpdateRule):
    r"""Synchronous SGD with momentum (the paper's SSGD baseline, Tables 4, 7, 8).

    Every round, each of the N workers computes one gradient at the same θ; the master averages them and
    takes one momentum step:

        ḡ = (1/N) Σ_i g_i
        v <- γ v + ḡ
        θ <- θ - η_t v

    t counts gradients applied (so the round's step uses η at the index of its last gradient). Gradients are
    averaged, not summed: with equal batch sizes, SSGD on N workers is momentum SGD on the concatenated
    batch. Until a round is complete every worker is sent the round's θ; a worker that sends a second
    gradient in the same round is an error (executors hand out one job per worker per round).
    """

    name = "ssgd"
    synchronous = True
    _tensor_state = ("params", "velocity", "grad_sum", "contributed")

    def __init__(self, params: Tensor, num_workers: int, lr: LearningRate, momentum: float = 0.9, *,
                 fused: bool = False) -> None:
        super().__init__(params, num_workers, lr, momentum, fused=fused)
        self.velocity = self._zeros()
        self.grad_sum = self._zeros()
        self.contributed = self._zeros(num_workers)[:, 0].bool()

    def _apply(self, worker: int, grad: Tensor, lr: float) -> None:
        if self.contributed[worker]:
            raise ValueError(
                f"worker: 'ssgd' takes one gradient per worker per round; worker {worker} already sent one "
                f"this round (still missing: {self.missing_workers()})"
            )
        self.grad_sum.add_(grad)
        self.contributed[worker] = True
        if bool(self.contributed.all()):
            momentum_update_(self.params, self.velocity, self.grad_sum.div_(self.num_workers),
                             lr=lr, momentum=self.momentum)
            self.grad_sum.zero_()
            self.contributed.zero_()

    def missing_workers(self) -> list[int]:
        """Workers whose gradient the current round still waits for."""
        return [i for i in range(self.num_workers) if not self.contributed[i]]
