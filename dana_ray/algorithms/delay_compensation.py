"""Delay compensation: DC-ASGD (Zheng et al. 2017) and DANA-DC (Hakimi et al., arXiv 1907.11612).

Source: Zheng, Meng, Wang, Chen, Yu, Ma, Liu, "Asynchronous Stochastic Gradient Descent with Delay
Compensation", ICML 2017 (Algorithm 1, DC-ASGD-c). A gradient g computed at the point x a worker was sent
reaches the master when its parameters are already θ. The first-order Taylor correction of g(θ) around x
uses the Hessian; DC-ASGD approximates it by the outer product of g with itself, cheapened to its diagonal
(λ > 0 controls the approximation's variance):

    g_dc = g + λ · g ⊙ g ⊙ (θ - x)

and then applies g_dc in place of g. Zheng et al.'s master has no momentum (θ <- θ - η g_dc); here
``dc-asgd`` is :class:`ASGD` with the compensated gradient, so ``momentum=0`` is exactly their
Algorithm 1 and the default keeps the single worker's momentum like every other rule (the DANA papers'
"out of the box" setting). λ is constant (their DC-ASGD-c); they report λ = 0.04 for CIFAR-10.

``dana-dc`` (the later DANA paper's combination) compensates DANA's gradients the same way; x is then the
look-ahead point θ̂ = θ - ηγΣv_j the worker was sent, so the correction covers only what DANA's estimate of
the future position missed.

Every sent point is kept until its gradient arrives (one buffer per worker: N·d memory, as in Zheng et al.'s
"backup" of the model per worker); an update stays O(d).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dana_ray.algorithms.base import LearningRate
from dana_ray.algorithms.momentum import ASGD, DANA
from dana_ray.checks import check_number

#: Zheng et al.'s λ for CIFAR-10 (DC-ASGD-c).
DEFAULT_DC_LAMBDA = 0.04


class _DelayCompensated:
    """Mixin: keep each worker's sent point; compensate its gradient before the base rule applies it."""

    options = ("dc_lambda",)

    def _init_compensation(self, dc_lambda: float) -> None:
        check_number("dc_lambda", dc_lambda, low=0.0)
        self.dc_lambda = float(dc_lambda)
        self.sent = self._zeros(self.num_workers).add_(self.params)  # until sent anything, x_i = θ_0
        if self._fused_step is not None:
            self._fused_step.set_dc_lambda(dc_lambda)
        else:
            self._compensated = self._zeros()

    def _params_for(self, worker: int, out: Tensor | None) -> Tensor:
        point = super()._params_for(worker, out)
        self.sent[worker].copy_(point)
        return point

    def _apply(self, worker: int, grad: Tensor, lr: float) -> None:
        if self._fused_step is not None:  # compensation and the base rule's update in one pass
            self._fused_step(self._velocity_of(worker), grad, lr, sent=self.sent[worker],
                             velocity_sum=getattr(self, "velocity_sum", None))  # DANA's Σ_j v_j, if any
            return
        # g + λ (g⊙(θ - x))⊙g in three fused passes over a preallocated buffer (no allocation per step)
        compensated = torch.sub(self.params, self.sent[worker], out=self._compensated).mul_(grad)
        torch.addcmul(grad, compensated, grad, value=self.dc_lambda, out=compensated)
        super()._apply(worker, compensated, lr)


class DCASGD(_DelayCompensated, ASGD):
    r"""DC-ASGD: ASGD (shared momentum) with Zheng et al.'s delay compensation. On worker i's gradient g,
    computed at the point x_i it was sent:

        g_dc = g + λ g ⊙ g ⊙ (θ - x_i)
        v <- γ v + g_dc
        θ <- θ - η_t v

    Worker i is then sent θ (and x_i <- θ). ``momentum=0``: Zheng et al.'s DC-ASGD-c exactly.
    """

    name = "dc-asgd"
    _tensor_state = ("params", "velocity", "sent")

    def __init__(self, params: Tensor, num_workers: int, lr: LearningRate, momentum: float = 0.9,
                 dc_lambda: float = DEFAULT_DC_LAMBDA, *, fused: bool = False) -> None:
        super().__init__(params, num_workers, lr, momentum, fused=fused)
        self._init_compensation(dc_lambda)


class DANADC(_DelayCompensated, DANA):
    r"""DANA-DC: DANA whose gradients are delay-compensated. On worker i's gradient g, computed at the
    look-ahead point x_i = θ̂ it was sent:

        g_dc = g + λ g ⊙ g ⊙ (θ - x_i)
        v_i  <- γ v_i + g_dc
        θ    <- θ - η_t v_i

    and worker i is sent x_i <- θ - η_t γ Σ_j v_j, as in DANA.
    """

    name = "dana-dc"
    _tensor_state = ("params", "velocity", "velocity_sum", "sent")

    def __init__(self, params: Tensor, num_workers: int, lr: LearningRate, momentum: float = 0.9,
                 dc_lambda: float = DEFAULT_DC_LAMBDA, *, fused: bool = False) -> None:
        super().__init__(params, num_workers, lr, momentum, fused=fused)
        self._init_compensation(dc_lambda)

