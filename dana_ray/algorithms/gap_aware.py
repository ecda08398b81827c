"""Gap-Aware: stale gradients penalised linearly in the gap (Barkai, Hakimi, Schuster, "Gap-Aware Mitigation
of Gradient Staleness", ICLR 2020, arXiv 1909.10802).

What we follow: a co-author's public implementation, ``GapAware.apply_on_theta`` with
``update_running_avg`` in ``pipe/pipeline/gap_aware/sgd_gap_aware.py`` of the repository saareliad/FTPipe,
for PyTorch's momentum SGD. Per element, on a gradient g computed at the point x and applied when the
master is at θ (k counts the gradients applied, this one included):

    r  <- β r + (1 - β) v ⊙ v                 the momentum before this step; β = 0.999
    C  =  η_max · (sqrt(r / (1 - β^k)) + ε)   "the average step": η_max the largest η so far, ε = 1e-8
    p  =  1 + |θ - x| / C                      the penalty, 1 where the gap is zero
    g' = (g + λθ) / p                          weight decay at the master is penalised too (as FTPipe does)
    v  <- γ v + g';  θ <- θ - η_t v            heavy ball, one shared v (the base rule GA is applied to)

and worker i is sent θ. Choices where FTPipe is a pipeline and we are a parameter server: the gap is the
exact |θ - x| of the point the master sent (the master keeps it with the outstanding job), and η_max is
tracked from the learning rates the rule has applied (FTPipe patches its scheduler to the same effect).
With one worker the gap is always zero (the point is θ), so the rule is momentum SGD.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dana_ray.algorithms.base import register_rule
from dana_ray.algorithms.momentum import ASGDMomentum, heavy_ball_update
from dana_ray.algorithms.ops import Scalar, scaled_add, scaled_addcmul
from dana_ray.core.checks import number
from dana_ray.core.registry import Option


def gap_aware_update(
    params: Tensor,
    velocity: Tensor,
    running: Tensor,
    grad: Tensor,
    point: Tensor,
    work: Tensor | None,
    penalty: Tensor | None,
    *,
    lr: Scalar,
    momentum: Scalar,
    weight_decay: Scalar,
    beta: Scalar,
    bias_correction: Scalar,
    max_lr: Scalar,
    eps: Scalar,
) -> None:
    """The update in the module docstring; ``work`` and ``penalty`` are eager work buffers (None compiled)."""
    running.mul_(beta)
    scaled_addcmul(running, 1 - beta, velocity, velocity)
    scale = running / bias_correction if work is None else torch.div(running, bias_correction, out=work)
    scale.sqrt_().add_(eps).mul_(max_lr)  # C
    gap = params - point if penalty is None else torch.sub(params, point, out=penalty)
    gap.abs_().div_(scale).add_(1)  # p
    if isinstance(weight_decay, Tensor) or weight_decay:
        penalised = scaled_add(grad, weight_decay, params, out=scale).div_(gap)  # (g + λθ) / p
    else:
        penalised = torch.div(grad, gap, out=scale)
    heavy_ball_update(params, velocity, penalised, lr=lr, momentum=momentum, weight_decay=0.0)


@register_rule("gap-aware")
class GapAware(ASGDMomentum):
    r"""ASGD with shared momentum whose stale gradients are divided, per element, by ``1 + |θ - x| / C`` (see
    the module docstring for C and the sources). On worker i's gradient g computed at x::

        g' = g / (1 + |θ - x| / C);   v <- γ v + g';   θ <- θ - η_t v

    and worker i is sent θ. Memory: one more d-vector (the running average r); an update is O(d).
    """

    paper_name = None
    options = {
        "beta": Option(0.999, number(0.0, below=1.0), "β of the running average of v ⊙ v"),
        "eps": Option(1e-8, number(0.0, above=True), "ε added to the root of the running average"),
    }
    vectors_per_update = 5 + 3 + 2  # read g, x, v, θ, r; write v, θ, r.  params_for: copy θ
    _tensor_state = ("params", "velocity", "running", "max_lr")

    def _allocate(self) -> None:
        super()._allocate()
        self.running = self._zeros()
        self.max_lr = torch.zeros((), dtype=torch.float64)  # the largest η applied so far
        self._work, self._penalty = self._scratch(), self._scratch()

    def _apply(self, worker: int, grad: Tensor, lr: float, point: Tensor | None, delay: int) -> None:
        self.max_lr.fill_(max(float(self.max_lr), lr))
        beta = self.option_values["beta"]
        self._kernel(gap_aware_update)(
            self.params,
            self.velocity,
            self.running,
            grad,
            self._need_point(point),
            self._work,
            self._penalty,
            lr=lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            beta=beta,
            bias_correction=1 - beta ** (self.step + 1),
            # with η = 0 nothing moves; a floor keeps 0/0 out of the penalty
            max_lr=max(float(self.max_lr), torch.finfo(self.params.dtype).tiny),
            eps=self.option_values["eps"],
        )
