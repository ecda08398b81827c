"""The rules of the DANA paper: Baseline, SSGD, ASGD, NAG-ASGD, Multi-ASGD and DANA (and ASGD with momentum).

Source: Hakimi, Barkai, Gabel, Schuster, "DANA: Scalable Out-of-the-box Distributed ASGD Without Retuning"
(ICLR 2019 submission, openreview SkGQujR5FX), Section 3, and its later version "Taming Momentum in a
Distributed Asynchronous Environment" (arXiv 1907.11612).

The family differs by one line each (cf. optax's ``trace``, which makes Nesterov one guarded expression):

==============  =====================================  =======================================
rule            on worker i's gradient g               worker i is sent
==============  =====================================  =======================================
baseline        v <- γv + g;  θ <- θ - ηv  (N = 1)      θ
ssgd            v <- γv + mean of N g;  θ <- θ - ηv     θ (the round's)
asgd            θ <- θ - ηg  (no momentum)             θ
asgd-momentum   v <- γv + g;  θ <- θ - ηv               θ
nag-asgd        v <- γv + g;  θ <- θ - ηv               θ - ηγv
multi-asgd      v_i <- γv_i + g;  θ <- θ - ηv_i         θ
dana            v_i <- γv_i + g;  θ <- θ - ηv_i         θ - ηγ Σ_j v_j
==============  =====================================  =======================================

**ASGD has no momentum** (our reading of the paper's tables, not a quotation). In every block-random table
ASGD is the one asynchronous method clearly worse than the baseline already at N = 2 (Table 4, ResNet-20:
10.90 vs 8.37; Table 7, WRN CIFAR-10: 6.84 vs 4.83; Table 8, WRN CIFAR-100: 27.69 vs 23.28), and it then
barely moves with N (11.10, 7.00, 27.47 at N = 12), while NAG-ASGD, Multi-ASGD and DANA, which all keep
momentum, stay within about 0.3 points of the baseline at N = 2 and degrade or diverge later (Table 3: at
N = 32 ASGD is at 13.21 where NAG-ASGD is at 84.98). A delay of one step cannot cost a shared-momentum rule
2.5-4.4 points when NAG-ASGD, which shares one momentum too, loses nothing at the same delay: this is the
signature of momentum-free asynchronous SGD (Dean et al.'s Downpour, Recht et al.'s Hogwild), whose error
with the baseline's learning rate is higher and which is robust to staleness. So ``asgd`` keeps no momentum
whatever the trial's ``momentum`` (the shared setting stays the baseline's: nothing is retuned), and the
shared heavy-ball rule is ``asgd-momentum``, for studies of "asynchrony begets momentum".

η in a look-ahead is the learning rate of the next step (the step the worker's gradient will be applied
near), so with N = 1 and a constant η the points NAG-ASGD and DANA send are exactly the iterates of
``torch.optim.SGD(momentum=γ, nesterov=True)``: with x_t = θ_t - ηγv_t,
x_{t+1} = θ_t - ηv_{t+1} - ηγv_{t+1} = x_t + ηγv_t - η(1+γ)(γv_t + g) = x_t - η(g + γv_{t+1}).

Each update is written once, below, in the ``ops`` vocabulary; ``fused=True`` compiles the same function.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from dana_ray.algorithms.base import RoundRule, UpdateRule, register_rule
from dana_ray.algorithms.ops import Scalar, descend_, heavy_ball_, scaled_add

# -- the updates, each written once ----------------------------------------------------------------------------


def sgd_update(params: Tensor, grad: Tensor, *, lr: Scalar, weight_decay: Scalar) -> None:
    """``θ <- θ - η (g + λθ)``."""
    descend_(params, lr, grad, weight_decay)


def heavy_ball_update(
    params: Tensor, velocity: Tensor, grad: Tensor, *, lr: Scalar, momentum: Scalar, weight_decay: Scalar
) -> None:
    """``v <- γ v + g + λθ;  θ <- θ - η v`` (one momentum buffer: the shared v, or worker i's v_i)."""
    heavy_ball_(params, velocity, grad, lr, momentum, weight_decay)


def dana_update(
    params: Tensor,
    velocity: Tensor,
    velocity_sum: Tensor,
    grad: Tensor,
    *,
    lr: Scalar,
    momentum: Scalar,
    weight_decay: Scalar,
) -> None:
    """Worker i's heavy-ball step on its own v_i, keeping ``Σ = Σ_j v_j`` as a running total:
    ``Σ -= v_i;  v_i <- γ v_i + g + λθ;  θ <- θ - η v_i;  Σ += v_i``."""
    velocity_sum.sub_(velocity)
    heavy_ball_(params, velocity, grad, lr, momentum, weight_decay)
    velocity_sum.add_(velocity)


def ssgd_round_update(
    params: Tensor,
    velocity: Tensor,
    grad_sum: Tensor,
    *,
    num_workers: Scalar,
    lr: Scalar,
    momentum: Scalar,
    weight_decay: Scalar,
) -> None:
    """``ḡ = Σg / N;  v <- γ v + ḡ + λθ;  θ <- θ - η v``; the sum is then zeroed for the next round."""
    grad_sum.div_(num_workers)
    heavy_ball_(params, velocity, grad_sum, lr, momentum, weight_decay)
    grad_sum.zero_()


def look_ahead(params: Tensor, velocity: Tensor, *, lr: float, momentum: float, out: Tensor | None = None) -> Tensor:
    """``θ - η γ v`` (a new tensor, or written into ``out``): where θ would move if the momentum ``v`` alone
    drove the next step. One pass."""
    if out is None:
        out = torch.empty_like(params)
    return scaled_add(params, -lr * momentum, velocity, out=out)


# -- the rules -------------------------------------------------------------------------------------------------


class _HeavyBall(UpdateRule):
    """Momentum SGD's state and step: ``v <- γ v + g;  θ <- θ - η_t v`` with one shared v, or one v_i per
    worker (``per_worker_momentum``)."""

    single_worker_form: ClassVar[str | None] = "momentum"
    vectors_per_update = 3 + 2 + 2  # read g, v, θ; write v, θ.  params_for: copy θ
    #: One momentum buffer per worker (Multi-ASGD, DANA) instead of one shared buffer.
    per_worker_momentum: ClassVar[bool] = False
    _tensor_state: ClassVar[tuple[str, ...]] = ("params", "velocity")

    def _allocate(self) -> None:
        self.velocity = self._zeros(self.num_workers) if self.per_worker_momentum else self._zeros()

    def _velocity_of(self, worker: int) -> Tensor:
        """The momentum buffer worker ``worker``'s gradient goes through."""
        return self.velocity[worker] if self.per_worker_momentum else self.velocity

    def _apply(self, worker: int, grad: Tensor, lr: float, point: Tensor | None, delay: int) -> None:
        self._kernel(heavy_ball_update)(
            self.params, self._velocity_of(worker), grad, lr=lr, momentum=self.momentum, weight_decay=self.weight_decay
        )


@register_rule("baseline")
class Baseline(_HeavyBall):
    r"""The single-worker baseline: plain momentum SGD, ``v <- γv + g; θ <- θ - η_t v``; N must be 1.

    Identical to ``torch.optim.SGD(lr=η, momentum=γ)`` (dampening 0, no Nesterov).
    """

    paper_name = "Baseline"
    max_workers = 1


@register_rule("ssgd")
class SSGD(RoundRule):
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

    paper_name = "SSGD"
    grad_sum: Tensor  # the round's sum of gradients (``RoundRule._allocate_round``)
    single_worker_form = "momentum"
    vectors_per_update = 2 + 1 + 2  # per gradient: read g, Σg; write Σg.  params_for: copy θ
    #: d-vectors moved once per round of N gradients (the step: read Σg, v, θ; write v, θ and Σg zeroed).
    vectors_per_round: ClassVar[int] = 6
    _tensor_state: ClassVar[tuple[str, ...]] = ("params", "velocity", "grad_sum", "contributed")
    round_sum = "grad_sum"

    def _allocate(self) -> None:
        self.velocity = self._zeros()
        self._allocate_round()

    def _step_round(self, lr: float) -> None:
        self._kernel(ssgd_round_update)(
            self.params,
            self.velocity,
            self.grad_sum,
            num_workers=float(self.num_workers),
            lr=lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )


@register_rule("asgd")
class ASGD(UpdateRule):
    r"""Asynchronous SGD, the paper's ASGD: no momentum.

    On worker i's gradient g (computed at the θ it was sent, possibly many steps ago):

        θ <- θ - η_t g

    and worker i is sent θ. The trial's ``momentum`` is not used (see the module docstring for why this is
    the paper's ASGD). With master-side weight decay, g + λθ in place of g.
    """

    paper_name: ClassVar[str | None] = "ASGD"
    single_worker_form = "sgd"
    vectors_per_update = 2 + 1 + 2  # read g, θ; write θ.  params_for: copy θ

    def _apply(self, worker: int, grad: Tensor, lr: float, point: Tensor | None, delay: int) -> None:
        self._kernel(sgd_update)(self.params, grad, lr=lr, weight_decay=self.weight_decay)


@register_rule("asgd-momentum")
class ASGDMomentum(_HeavyBall):
    r"""Asynchronous SGD with one shared momentum buffer (heavy ball).

    Inputs: θ_0, learning rate η_t, momentum γ, N workers. On worker i's gradient g:

        v <- γ v + g
        θ <- θ - η_t v

    Worker i is then sent θ. Every gradient, whichever worker sent it, goes through the same v, so a stale
    gradient keeps pushing for many steps. Not a row of the paper's tables (its ASGD has no momentum; see the
    module docstring): kept for studies of how momentum and asynchrony interact.
    """


@register_rule("nag-asgd")
class NAGASGD(ASGDMomentum):
    r"""ASGD with shared momentum and a Nesterov look-ahead: the update of :class:`ASGDMomentum`, but worker
    i is sent

        θ - η_{t} γ v

    (η_t: the learning rate of the next step). With N = 1 this is Nesterov momentum SGD; with N > 1 the
    look-ahead covers only one step of the shared momentum while the gradient arrives N - 1 steps later.
    """

    paper_name = "NAG-ASGD"
    single_worker_form = "nesterov"
    vectors_per_update = 3 + 2 + 3  # params_for: read θ, v; write θ - ηγv

    def _params_for(self, worker: int, out: Tensor | None) -> Tensor:
        return look_ahead(self.params, self.velocity, lr=self.lr_at(self.step), momentum=self.momentum, out=out)


@register_rule("multi-asgd")
class MultiASGD(_HeavyBall):
    r"""Asynchronous SGD with one momentum buffer per worker (the paper's Multi-ASGD).

    On worker i's gradient g:

        v_i <- γ v_i + g
        θ   <- θ - η_t v_i

    Worker i is sent θ. Each worker's momentum only accumulates its own gradients, as if every worker ran
    its own momentum SGD against the shared θ.
    """

    paper_name: ClassVar[str | None] = "Multi-ASGD"
    per_worker_momentum = True


@register_rule("dana")
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
    drift from the exact sum by about float-epsilon x ``|v|`` x sqrt(steps); tests bound it.
    """

    paper_name: ClassVar[str | None] = "DANA"
    single_worker_form: ClassVar[str | None] = "nesterov"
    vectors_per_update = 4 + 3 + 3  # read g, v_i, θ, Σ; write v_i, θ, Σ.  params_for: read θ, Σ; write x
    _tensor_state = ("params", "velocity", "velocity_sum")

    def _allocate(self) -> None:
        super()._allocate()
        self.velocity_sum = self._zeros()

    def _apply(self, worker: int, grad: Tensor, lr: float, point: Tensor | None, delay: int) -> None:
        self._kernel(dana_update)(
            self.params,
            self.velocity[worker],
            self.velocity_sum,
            grad,
            lr=lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )

    def _params_for(self, worker: int, out: Tensor | None) -> Tensor:
        return look_ahead(self.params, self.velocity_sum, lr=self.lr_at(self.step), momentum=self.momentum, out=out)
