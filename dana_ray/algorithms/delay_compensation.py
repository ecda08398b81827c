"""Delay compensation: DC-ASGD (Zheng et al. 2017) and DANA-DC (Hakimi et al., arXiv 1907.11612).

Source: Zheng, Meng, Wang, Chen, Yu, Ma, Liu, "Asynchronous Stochastic Gradient Descent with Delay
Compensation", ICML 2017 (Algorithm 1, DC-ASGD-c). A gradient g computed at the point x a worker was sent
reaches the master when its parameters are already θ. The first-order Taylor correction of g(θ) around x
uses the Hessian; DC-ASGD approximates it by the outer product of g with itself, cheapened to its diagonal
(λ > 0 controls the approximation's variance):

    g_dc = g + λ · g ⊙ g ⊙ (θ - x)

and then applies g_dc in place of g. ``dc-asgd`` is exactly their Algorithm 1: :class:`ASGD` (no momentum,
as in their paper and in the DANA paper's ASGD) with the compensated gradient, λ = 0.04 by default (their
CIFAR-10 value for DC-ASGD-c).

``dana-dc`` (the later DANA paper's combination) compensates DANA's gradients the same way; x is then the
look-ahead point θ̂ = θ - ηγΣv_j the worker was sent, so the correction covers only what DANA's estimate of
the future position missed. Its default λ = 2 is the authors' DANA-DC simulator's (published with the
follow-up paper: ``g + dc · g · g · (θ_master - x)`` with ``--dc`` defaulting to 2, before PyTorch's SGD
adds weight decay at the master); the compensation is applied to the loss gradient, then weight decay.

The point x is the one the master already holds for the worker's outstanding job (``apply(..., point=x)``),
so the rules keep no copy of their own: their memory is that of the plain rule.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dana_ray.algorithms.base import register_rule
from dana_ray.algorithms.momentum import ASGD, DANA, dana_update
from dana_ray.algorithms.ops import Scalar, descend_, scaled_addcmul
from dana_ray.core.checks import number
from dana_ray.core.registry import Option


def compensate(grad: Tensor, params: Tensor, point: Tensor, dc_lambda: Scalar, out: Tensor | None) -> Tensor:
    """``g + λ · g ⊙ g ⊙ (θ - x)``: into ``out`` (a work buffer) eagerly, a temporary when compiled."""
    difference = params - point if out is None else torch.sub(params, point, out=out)
    difference.mul_(grad)
    return scaled_addcmul(grad, dc_lambda, difference, grad, out=difference)


def dc_sgd_update(
    params: Tensor,
    grad: Tensor,
    point: Tensor,
    scratch: Tensor | None,
    *,
    lr: Scalar,
    dc_lambda: Scalar,
    weight_decay: Scalar,
) -> None:
    """``θ <- θ - η (g_dc + λ_wd θ)``."""
    descend_(params, lr, compensate(grad, params, point, dc_lambda, scratch), weight_decay)


def dana_dc_update(
    params: Tensor,
    velocity: Tensor,
    velocity_sum: Tensor,
    grad: Tensor,
    point: Tensor,
    scratch: Tensor | None,
    *,
    lr: Scalar,
    momentum: Scalar,
    dc_lambda: Scalar,
    weight_decay: Scalar,
) -> None:
    """DANA's update of g_dc."""
    dana_update(
        params,
        velocity,
        velocity_sum,
        compensate(grad, params, point, dc_lambda, scratch),
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
    )


@register_rule("dc-asgd")
class DCASGD(ASGD):
    r"""DC-ASGD: ASGD (no momentum) with Zheng et al.'s delay compensation. On worker i's gradient g,
    computed at the point x_i it was sent:

        g_dc = g + λ g ⊙ g ⊙ (θ - x_i)
        θ <- θ - η_t g_dc

    Worker i is then sent θ. Zheng et al.'s DC-ASGD-c exactly.
    """

    paper_name = None
    options = {"dc_lambda": Option(0.04, number(0.0), "λ, the compensation's strength (Zheng et al.: 0.04)")}
    vectors_per_update = 3 + 1 + 2  # read g, θ, x_i; write θ.  params_for: copy θ

    def _allocate(self) -> None:
        self._work = self._scratch()

    def _apply(self, worker: int, grad: Tensor, lr: float, point: Tensor | None, delay: int) -> None:
        self._kernel(dc_sgd_update)(
            self.params,
            grad,
            self._need_point(point),
            self._work,
            lr=lr,
            dc_lambda=self.option_values["dc_lambda"],
            weight_decay=self.weight_decay,
        )


@register_rule("dana-dc")
class DANADC(DANA):
    r"""DANA-DC: DANA whose gradients are delay-compensated. On worker i's gradient g, computed at the
    look-ahead point x_i = θ̂ it was sent:

        g_dc = g + λ g ⊙ g ⊙ (θ - x_i)
        v_i  <- γ v_i + g_dc
        θ    <- θ - η_t v_i

    and worker i is sent θ - η_t γ Σ_j v_j, as in DANA. With one worker the point is DANA's look-ahead,
    not θ, so the rule does not reduce to Nesterov SGD.
    """

    paper_name = None
    single_worker_form = None
    options = {"dc_lambda": Option(2.0, number(0.0), "λ, the compensation's strength (the authors' DANA-DC: 2)")}
    vectors_per_update = 5 + 3 + 3  # DANA's, and read x_i

    def _allocate(self) -> None:
        super()._allocate()
        self._work = self._scratch()

    def _apply(self, worker: int, grad: Tensor, lr: float, point: Tensor | None, delay: int) -> None:
        self._kernel(dana_dc_update)(
            self.params,
            self.velocity[worker],
            self.velocity_sum,
            grad,
            self._need_point(point),
            self._work,
            lr=lr,
            momentum=self.momentum,
            dc_lambda=self.option_values["dc_lambda"],
            weight_decay=self.weight_decay,
        )
