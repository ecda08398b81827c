"""The asynchronous momentum rules of the DANA paper: Baseline, ASGD, NAG-ASGD, Multi-ASGD and DANA.

Source: Hakimi, Barkai, Gabel, Schuster, "DANA: Scalable Out-of-the-box Distributed ASGD Without Retuning"
(ICLR 2019 submission, openreview SkGQujR5FX), Section 3 (ASGD with momentum, NAG-ASGD, Multi-ASGD, DANA),
and its later version "Taming Momentum in a Distributed Asynchronous Environment" (arXiv 1907.11612).

The family differs by one line each (cf. optax's ``trace``, which makes Nesterov one guarded expression):

==============  ================================  =======================================
rule            on worker i's gradient g          worker i is sent
==============  ================================  =======================================
baseline        v <- γv + g;  θ <- θ - ηv (N=1)    θ
asgd            v <- γv + g;  θ <- θ - ηv          θ
nag-asgd        v <- γv + g;  θ <- θ - ηv          θ - ηγv
multi-asgd      v_i <- γv_i + g; θ <- θ - ηv_i     θ
dana            v_i <- γv_i + g; θ <- θ - ηv_i     θ - ηγ Σ_j v_j
==============  ================================  =======================================

η in a look-ahead is the learning rate of the next step (the step the worker's gradient will be applied
near), so with N = 1 and a constant η the points NAG-ASGD and DANA send are exactly the iterates of
``torch.optim.SGD(momentum=γ, nesterov=True)``: with x_t = θ_t - ηγv_t,
x_{t+1} = θ_t - ηv_{t+1} - ηγv_{t+1} = x_t + ηγv_t - η(1+γ)(γv_t + g) = x_t - η(g + γv_{t+1}).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from dana_ray.algorithms.base import LearningRate, UpdateRule
from dana_ray.algorithms.fused import FusedMomentumStep


def momentum_update_(params: Tensor, velocity: Tensor, grad: Tensor, *, lr: float, momentum: float) -> None:
    """In place: ``v <- γ v + g;  θ <- θ - η v``: two fused passes (``g + γv`` written over v; then θ)."""
    torch.add(grad, velocity, alpha=momentum, out=velocity)
    params.add_(velocity, alpha=-lr)


def look_ahead(params: Tensor, velocity: Tensor, *, lr: float, momentum: float, out: Tensor | None = None) -> Tensor:
    """``θ - η γ v`` (a new tensor, or written into ``out``): where θ would move if the momentum ``v`` alone
    drove the next step. One fused pass."""
    return torch.add(params, velocity, alpha=-lr * momentum, out=out)


class ASGD(UpdateRule):
    r"""Asynchronous SGD with one shared momentum buffer.

    Inputs: θ_0, learning rate η_t, momentum γ, N workers.
    On worker i's gradient g (computed at the θ it was sent, possibly many steps ago):

        v <- γ v + g
        θ <- θ - η_t v

    Worker i is then sent θ. Every gradient, whichever worker sent it, goes through the same v, so a stale
    gradient keeps pushing for many steps (the paper's explanation of ASGD's degradation as N grows).
    """

    name = "asgd"
    fusable = True
    #: One momentum buffer per worker (Multi-ASGD, DANA) instead of one shared buffer.
    per_worker_momentum: ClassVar[bool] = False
    _tensor_state = ("params", "velocity")

    def __init__(self, params: Tensor, num_workers: int, lr: LearningRate, momentum: float = 0.9, *,
                 fused: bool = False) -> None:
        super().__init__(params, num_workers, lr, momentum, fused=fused)
        self.velocity = self._zeros(num_workers) if self.per_worker_momentum else self._zeros()
        self._fused_step = FusedMomentumStep(self.params, momentum) if fused else None

    def _velocity_of(self, worker: int) -> Tensor:
        """The momentum buffer worker ``worker``'s gradient goes through."""
        return self.velocity[worker] if self.per_worker_momentum else self.velocity

    def _apply(self, worker: int, grad: Tensor, lr: float) -> None:
        if self._fused_step is not None:
            self._fused_step(self._velocity_of(worker), grad, lr)
        else:
            momentum_update_(self.params, self._velocity_of(worker), grad, lr=lr, momentum=self.momentum)


class Baseline(ASGD):
    r"""The single-worker baseline: plain momentum SGD, ``v <- γv + g; θ <- θ - η_t v``; N must be 1.

    Identical to ``torch.optim.SGD(lr=η, momentum=γ)`` (dampening 0, no Nesterov).
    """

    name = "baseline"

    def __init__(self, params: Tensor, num_workers: int, lr: LearningRate, momentum: float = 0.9, *,
                 fused: bool = False) -> None:
        if num_workers != 1:
            raise ValueError(f"num_workers: 'baseline' is the single-worker baseline and needs 1, got {num_workers!r}")
        super().__init__(params, num_workers, lr, momentum, fused=fused)


class NAGASGD(ASGD):
    r"""ASGD with a Nesterov look-ahead: the update of :class:`ASGD`, but worker i is sent

        θ - η_{t} γ v

    (η_t: the learning rate of the next step). With N = 1 this is Nesterov momentum SGD; with N > 1 the
    look-ahead covers only one step of the shared momentum while the gradient arrives N - 1 steps later.
    """

    name = "nag-asgd"

    def _params_for(self, worker: int, out: Tensor | None) -> Tensor:
        return look_ahead(self.params, self.velocity, lr=self.lr_at(self.step), momentum=self.momentum, out=out)


class MultiASGD(ASGD):
    r"""Asynchronous SGD with one momentum buffer per worker (the paper's Multi-ASGD).

    On worker i's gradient g:

        v_i <- γ v_i + g
        θ   <- θ - η_t v_i

    Worker i is sent θ. Each worker's momentum only accumulates its own gradients, as if every worker ran
    its own momentum SGD against the shared θ.
    """

    name = "multi-asgd"
    per_worker_momentum = True


class DANA(MultiASGD):
    r"""DANA: Multi-ASGD whose workers compute their gradients at an estimate of θ's future position.

    On worker i's gradient g, the update of :class:`MultiASGD`:

        v_i <- γ v_i + g
        θ   <- θ - η_t v_i

    and worker i is sent the look-ahead over every worker's momentum,

        θ̂ = θ - η_t γ Σ_j v_j,

    the position θ reaches if each worker's next update is its momentum term alone (the paper's
    Algorithm "DANA", Section 3). Σ_j v_j is kept as a running total ``velocity_sum``, updated by the change
    of v_i (``Σ += v_i_new - v_i_old``), so an update costs O(d) whatever N. Rounding makes the running total
    drift from the exact sum by about float-epsilon x |v| x sqrt(steps); tests bound it.
    """

    name = "dana"
    _tensor_state = ("params", "velocity", "velocity_sum")

    def __init__(self, params: Tensor, num_workers: int, lr: LearningRate, momentum: float = 0.9, *,
                 fused: bool = False) -> None:
        super().__init__(params, num_workers, lr, momentum, fused=fused)
        self.velocity_sum = self._zeros()

    def _apply(self, worker: int, grad: Tensor, lr: float) -> None:
        velocity = self.velocity[worker]
        if self._fused_step is not None:
            self._fused_step(velocity, grad, lr, velocity_sum=self.velocity_sum)
            return
        self.velocity_sum.sub_(velocity)
        momentum_update_(self.params, velocity, grad, lr=lr, momentum=self.momentum)
        self.velocity_sum.add_(velocity)

    def _params_for(self, worker: int, out: Tensor | None) -> Tensor:
        return look_ahead(self.params, self.velocity_sum, lr=self.lr_at(self.step), momentum=self.momentum, out=out)
