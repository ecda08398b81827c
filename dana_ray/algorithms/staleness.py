"""Asynchronous SGD that acts on each gradient's delay: a smaller step for a stale gradient, or none.

Sources:
- Mishchenko, Bach, Even, Woodworth, "Asynchronous SGD Beats Minibatch SGD Under Arbitrary Delays"
  (NeurIPS 2022), and their public code (github.com/konstmish/asynchronous_sgd);
- Maranjyan, Tyurin, Richtárik, "Ringmaster ASGD: The First Asynchronous SGD with Optimal Time
  Complexity" (ICML 2025).

τ is the delay the job protocol measures (``algorithms/jobs.py``): the changes of θ between the moment the
gradient's point was sent and the moment it is applied (0: nothing changed in between).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dana_ray.algorithms.base import UpdateRule, register_rule
from dana_ray.algorithms.momentum import sgd_update
from dana_ray.core.checks import integer, number, optional
from dana_ray.core.registry import Option


@register_rule("delay-adaptive")
class DelayAdaptive(UpdateRule):
    r"""Asynchronous SGD with delay-adaptive steps (Mishchenko et al. 2022). On worker i's gradient g, τ
    updates old:

        η_t' = η_t · min(1, c / τ)   (= η_t · c / max(c, τ))
        θ <- θ - η_t' g

    and worker i is sent θ. No momentum (their ASGD has none). c (``delay_scale``) defaults to N, what the
    authors' code does (``lr * num_workers / max(num_workers, delay)``). Their code counts one more than
    the paper's τ (a gradient applied with no update in between has delay 1 there); we use the paper's τ,
    which changes the step only for τ ≥ c.
    """

    options = {
        "delay_scale": Option(
            None, optional(number(0.0, above=True)), "c: gradients up to c updates old get the full step (default: N)"
        )
    }
    single_worker_form = "sgd"
    vectors_per_update = 2 + 1 + 2  # read g, θ; write θ.  params_for: copy θ

    def _apply(self, worker: int, grad: Tensor, lr: float, point: Tensor | None, delay: int) -> None:
        scale = self.option_values["delay_scale"] or self.num_workers
        self._kernel(sgd_update)(self.params, grad, lr=lr * scale / max(scale, delay), weight_decay=self.weight_decay)


@register_rule("ringmaster")
class Ringmaster(UpdateRule):
    r"""Ringmaster ASGD (Maranjyan, Tyurin, Richtárik 2025): asynchronous SGD that discards a gradient
    that is too stale. On worker i's gradient g, τ updates old:

        τ < R:   θ <- θ - η_t g
        τ >= R:  θ unchanged (the gradient is discarded; θ does not change, so τ counts applied updates)

    and worker i is sent θ either way. R (``max_delay``) defaults to N, which discards nothing under
    round robin (τ = N - 1 there) and drops the stragglers' gradients under gamma-distributed times;
    the paper's R = max(1, ⌈σ²/ε⌉) needs the gradient noise σ² and the target ε, unknown to a trial.
    The step counter (and so the learning-rate schedule, in epochs of data) counts discarded gradients
    too: their batches were read. Each epoch's row reports ``discarded_gradients``, the total so far.
    """

    options = {
        "max_delay": Option(None, optional(integer(1)), "R: a gradient R or more updates old is discarded (default: N)")
    }
    single_worker_form = "sgd"
    vectors_per_update = 2 + 1 + 2  # read g, θ; write θ.  params_for: copy θ
    _tensor_state = ("params", "discarded")

    def _allocate(self) -> None:
        self.discarded = torch.zeros((), dtype=torch.int64, device=self.params.device)

    def _apply(self, worker: int, grad: Tensor, lr: float, point: Tensor | None, delay: int) -> bool:
        if delay >= (self.option_values["max_delay"] or self.num_workers):
            self.discarded += 1
            return False
        self._kernel(sgd_update)(self.params, grad, lr=lr, weight_decay=self.weight_decay)
        return True

    def epoch_metrics(self) -> dict[str, float]:
        return {"discarded_gradients": int(self.discarded)}
