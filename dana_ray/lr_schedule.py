"""The learning rate as a function of the step (gradients applied), built from epoch-level settings."""

from __future__ import annotations

from typing import Callable, Sequence


def step_decay(lr: float, steps_per_epoch: int, decay_epochs: Sequence[float] = (), decay_factor: float = 0.1,
               warmup_epochs: float = 0.0) -> Callable[[int], float]:
    """η_t = lr · factor^(number of decay epochs ≤ t / steps_per_epoch), times a linear warm-up.

    Warm-up (Goyal et al. 2017, "Accurate, Large Minibatch SGD"): over the first ``warmup_epochs`` the rate
    grows linearly, η_t = lr · (t + 1) / warmup_steps. Decay epochs are counted in data seen, so they mean the
    same whatever the number of workers.
    """
    boundaries = sorted(round(e * steps_per_epoch) for e in decay_epochs)
    warmup_steps = round(warmup_epochs * steps_per_epoch)

    def lr_at(step: int) -> float:
        rate = lr * decay_factor ** sum(step >= b for b in boundaries)
        if step < warmup_steps:
            rate *= (step + 1) / warmup_steps
        return rate

    return lr_at
