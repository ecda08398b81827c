"""Rules whose jobs are H local steps: each worker runs an inner optimizer over H consecutive batches of its
stream from the point it was sent and returns the pseudo-gradient Δ = x_0 - x_H; an outer optimizer at the
master applies the pseudo-gradients.

Sources:
- Douillard, Feng, Rusu, Chhaparia, Donchev, Kuncoro, Ranzato, Szlam, Shen, "DiLoCo: Distributed
  Low-Communication Training of Language Models" (2023): synchronous rounds, inner AdamW, outer Nesterov
  (outer η = 0.7, μ = 0.9);
- Liu, Chhaparia, Douillard, Kale, Rusu, Shen, Szlam, Ranzato, "Asynchronous Local-SGD Training for
  Language Modeling" (2024): asynchronous pseudo-gradients with the Delayed Nesterov (DN) outer update.

The inner learning rate is the trial's ``lr`` and schedule, taken when the job was sent (``Job.lr``); the
trial's ``momentum`` is the inner SGD's. An epoch is still len(train set) // batch_size batches: with H
local steps it is that many // H jobs, so epochs mean the same data whatever H.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.optim.adamw import adamw
from torch.optim.sgd import sgd

from dana_ray.algorithms.base import GradientAt, PerWorkerState, RoundRule, UpdateRule, WorkerSideState, register_rule
from dana_ray.algorithms.ops import Scalar, descend_, momentum_, scaled_add
from dana_ray.core.checks import integer, number, one_of, optional
from dana_ray.core.registry import Option

#: The workers' optimizers: SGD with the trial's momentum, or AdamW (the DiLoCo papers').
INNER_OPTIMIZERS = ("sgd", "adamw")


class LocalSteps:
    r"""The worker side of a local-steps rule (a ``WorkerSide``): H steps of the inner optimizer from the
    point x_0 it was sent, at the job's η, on batches b·H ... b·H + H - 1 of the worker's stream; sends
    Δ = x_0 - x_H.

        sgd:    v <- γ v + g;   x <- x - η v                          (torch.optim.SGD, momentum γ)
        adamw:  t <- t + 1;  m <- β1 m + (1 - β1) g;  s <- β2 s + (1 - β2) g²;
                x <- x (1 - η λ') - η (m / (1 - β1^t)) / (√(s / (1 - β2^t)) + ε)   (torch.optim.AdamW)

    Each step is PyTorch's own, its functional form (``torch.optim.sgd.sgd``, ``torch.optim.adamw.adamw``,
    single-tensor), not a second implementation to keep in step with it. g includes the trial's worker-side
    weight decay λx; λ' is AdamW's own decoupled decay (``inner_weight_decay``). The inner state (v; or t, m,
    s) is each worker's own and persists from one job to the next, as in DiLoCo; it is checkpointed and
    recomputed per job like any worker side.
    """

    def __init__(
        self,
        local_steps: int,
        inner: str,
        momentum: float,
        adam_betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        inner_weight_decay: float = 0.0,
    ) -> None:
        self.local_steps, self.inner, self.momentum = int(local_steps), inner, float(momentum)
        self.beta1, self.beta2 = (float(b) for b in adam_betas)
        self.eps, self.inner_weight_decay = float(adam_eps), float(inner_weight_decay)
        self.state = PerWorkerState()

    def run(self, worker: int, job: int, point: Tensor, lr: float, gradient: GradientAt) -> Tensor:
        x = point.clone()
        state = self.state.begin(worker, job, lambda: self._fresh(x))
        for h in range(self.local_steps):
            grad = gradient(x, h)
            if self.inner == "sgd":
                sgd(
                    [x],
                    [grad],
                    [state["velocity"]],
                    foreach=False,
                    weight_decay=0.0,
                    momentum=self.momentum,
                    lr=lr,
                    dampening=0.0,
                    nesterov=False,
                    maximize=False,
                )
            else:
                adamw(
                    [x],
                    [grad],
                    [state["exp_avg"]],
                    [state["exp_avg_sq"]],
                    [],
                    [state["steps"]],
                    foreach=False,
                    amsgrad=False,
                    beta1=self.beta1,
                    beta2=self.beta2,
                    lr=lr,
                    weight_decay=self.inner_weight_decay,
                    eps=self.eps,
                    maximize=False,
                )
        return torch.sub(point, x)

    def _fresh(self, like: Tensor) -> dict[str, Tensor]:
        if self.inner == "sgd":
            return {"velocity": torch.zeros_like(like)}
        return {
            "steps": torch.zeros((), dtype=torch.float64),
            "exp_avg": torch.zeros_like(like),
            "exp_avg_sq": torch.zeros_like(like),
        }

    def state_dict(self, next_job: dict[int, int]) -> WorkerSideState:
        return self.state.state_dict(next_job)

    def load_state_dict(self, state: WorkerSideState) -> None:
        self.state.load_state_dict(state)


#: The options every local-steps rule takes (its worker side's), with the papers' outer defaults added by each.
LOCAL_STEP_OPTIONS = {
    "local_steps": Option(
        4, integer(1, 100_000), "H: batches each job computes from the point it was sent (the papers: hundreds)"
    ),
    "inner": Option(
        "sgd",
        one_of(*INNER_OPTIMIZERS),
        "the workers' optimizer: 'sgd' (the trial's momentum) or 'adamw' (the DiLoCo papers')",
    ),
    "adam_beta1": Option(0.9, number(0.0, below=1.0), "AdamW's β1 (inner: adamw)"),
    "adam_beta2": Option(0.999, number(0.0, below=1.0), "AdamW's β2 (inner: adamw)"),
    "adam_eps": Option(1e-8, number(0.0, above=True), "AdamW's ε (inner: adamw)"),
    "inner_weight_decay": Option(0.0, number(0.0), "AdamW's decoupled weight decay λ' (inner: adamw)"),
    "outer_lr": Option(0.7, number(0.0), "the outer step η_out (DiLoCo: 0.7)"),
    "outer_momentum": Option(0.9, number(0.0, below=1.0), "the outer Nesterov momentum μ (DiLoCo: 0.9)"),
}


class _LocalStepsRule(UpdateRule):
    """What the local-steps rules share: the worker side built from their options."""

    options = LOCAL_STEP_OPTIONS
    #: N = 1 with one local step and a plain outer step of 1 is the inner optimizer itself: SGD with the
    #: trial's momentum (up to the rounding of x_0 - (x_0 - η v)).
    single_worker_form = "momentum"
    single_worker_options = {"local_steps": 1, "outer_lr": 1.0, "outer_momentum": 0.0}

    @classmethod
    def make_worker_side(cls, momentum: float, options: dict) -> LocalSteps:
        return LocalSteps(
            options["local_steps"],
            options["inner"],
            momentum,
            (options["adam_beta1"], options["adam_beta2"]),
            options["adam_eps"],
            options["inner_weight_decay"],
        )


def outer_nesterov_update(
    params: Tensor, velocity: Tensor, delta: Tensor, *, lr: Scalar, momentum: Scalar, weight_decay: Scalar
) -> None:
    """``d = Δ + λθ;  u <- μ u + d;  θ <- θ - η (d + μ u)``: torch.optim.SGD(momentum=μ, nesterov=True) on
    Δ."""
    momentum_(velocity, momentum, delta, params, weight_decay)
    descend_(params, lr, delta, weight_decay)
    scaled_add(params, -lr * momentum, velocity)


def diloco_round_update(
    params: Tensor,
    velocity: Tensor,
    delta_sum: Tensor,
    *,
    num_workers: Scalar,
    lr: Scalar,
    momentum: Scalar,
    weight_decay: Scalar,
) -> None:
    """``Δ̄ = ΣΔ / N``, the outer Nesterov step on Δ̄; the sum is then zeroed for the next round."""
    delta_sum.div_(num_workers)
    outer_nesterov_update(params, velocity, delta_sum, lr=lr, momentum=momentum, weight_decay=weight_decay)
    delta_sum.zero_()


@register_rule("diloco")
class DiLoCo(_LocalStepsRule, RoundRule):
    r"""DiLoCo (Douillard et al. 2023): synchronous rounds of H local steps. Every round each of the N
    workers computes H inner steps from the same θ and sends Δ_i; once all N arrived:

        Δ̄ = (1/N) Σ_i Δ_i
        u <- μ u + Δ̄;   θ <- θ - η_out (Δ̄ + μ u)      (outer Nesterov: torch.optim.SGD(nesterov=True))

    and every worker is sent θ. η_out = ``outer_lr`` (0.7), μ = ``outer_momentum`` (0.9), as in the
    paper; the paper's inner optimizer is AdamW (``inner: adamw``); ours defaults to SGD with the trial's
    momentum, so a config tuned for the other rules trains as it is. Master-side weight decay adds λθ to Δ̄.
    """

    vectors_per_update = 2 + 1 + 2  # per result: read Δ, ΣΔ; write ΣΔ.  params_for: copy θ
    _tensor_state = ("params", "outer_velocity", "delta_sum", "contributed")
    round_sum = "delta_sum"
    delta_sum: Tensor  # the round's sum of pseudo-gradients (``RoundRule._allocate_round``)

    def _allocate(self) -> None:
        self.outer_velocity = self._zeros()
        self._allocate_round()

    def _step_round(self, lr: float) -> None:
        self._kernel(diloco_round_update)(
            self.params,
            self.outer_velocity,
            self.delta_sum,
            num_workers=float(self.num_workers),
            lr=self.option_values["outer_lr"],
            momentum=self.option_values["outer_momentum"],
            weight_decay=self.weight_decay,
        )


def delayed_nesterov_plain(
    params: Tensor, delta_sum: Tensor, delta: Tensor, *, lr: Scalar, every: Scalar, weight_decay: Scalar
) -> None:
    """``Σ <- Σ + Δ;  θ <- θ - (η/K) (Δ + λθ)``."""
    delta_sum.add_(delta)
    descend_(params, lr / every, delta, weight_decay)


def delayed_nesterov_momentum(
    params: Tensor,
    velocity: Tensor,
    delta_sum: Tensor,
    delta: Tensor,
    *,
    lr: Scalar,
    momentum: Scalar,
    every: Scalar,
    weight_decay: Scalar,
) -> None:
    """``Σ <- Σ + Δ;  u <- μ u + Σ/K;  θ <- θ - (η/K) (Δ + λθ) - η μ u;  Σ <- 0``."""
    delta_sum.add_(delta)
    velocity.mul_(momentum)
    scaled_add(velocity, 1 / every, delta_sum)
    descend_(params, lr / every, delta, weight_decay)
    scaled_add(params, -lr * momentum, velocity)
    delta_sum.zero_()


@register_rule("async-diloco")
class AsyncDiLoCo(_LocalStepsRule):
    r"""Asynchronous local SGD with the Delayed Nesterov outer update (Liu et al. 2024). Worker i's
    pseudo-gradient Δ (H local steps from the θ it was sent, possibly stale) is applied when it arrives; the
    outer momentum moves only once every K arrivals, from the buffered pseudo-gradients:

        Σ <- Σ + Δ
        every K-th arrival:  u <- μ u + Σ / K;   θ <- θ - η_out (Δ / K + μ u);   Σ <- 0
        otherwise:           θ <- θ - η_out Δ / K

    and worker i is sent θ. K = ``momentum_every`` (default N). What was chosen where we could not read the
    paper's algorithm box: the plain steps carry Δ/K, so that with no delays (all N pseudo-gradients
    computed at the same θ) K = N arrivals move θ exactly as one DiLoCo round (the update in Σ/K plus
    μ u); with K = 1 and μ = 0 each arrival is θ <- θ - η_out Δ: with H = 1, inner SGD without momentum and
    η_out = 1, asynchronous SGD (``asgd``) up to the rounding of Δ. The paper's dynamic local steps
    (H per worker in proportion to its speed) are not implemented. Master-side weight decay adds λθ to
    each arrival's step (not to u).
    """

    options = {
        **LOCAL_STEP_OPTIONS,
        "momentum_every": Option(
            None, optional(integer(1)), "K: the outer momentum moves once every K arrivals (default: N)"
        ),
    }
    vectors_per_update = 3 + 2 + 2  # plain arrival: read Δ, Σ, θ; write Σ, θ.  params_for: copy θ
    _tensor_state = ("params", "outer_velocity", "delta_sum")

    def _allocate(self) -> None:
        self.outer_velocity = self._zeros()
        self.delta_sum = self._zeros()

    def _apply(self, worker: int, delta: Tensor, lr: float, point: Tensor | None, delay: int) -> None:
        every = self.option_values["momentum_every"] or self.num_workers
        outer_lr = self.option_values["outer_lr"]
        if (self.step + 1) % every == 0:
            self._kernel(delayed_nesterov_momentum)(
                self.params,
                self.outer_velocity,
                self.delta_sum,
                delta,
                lr=outer_lr,
                momentum=self.option_values["outer_momentum"],
                every=float(every),
                weight_decay=self.weight_decay,
            )
        else:
            self._kernel(delayed_nesterov_plain)(
                self.params, self.delta_sum, delta, lr=outer_lr, every=float(every), weight_decay=self.weight_decay
            )
