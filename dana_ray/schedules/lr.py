"""The learning rate as a function of the step (gradients applied), built from epoch-level settings."""

from __future__ import annotations

from collections.abc import Callable, Sequence

#: Where a linear warm-up starts (the trial config's ``warmup_start``):
#: "lr/N": η/N for N workers, the DANA authors' simulator (``np.linspace(lr / N, lr, warmup steps)``), which is
#:         Goyal et al.'s gradual warm-up with k = N (from the single worker's rate to k times it); with one
#:         worker there is no warm-up at all;
#: "lr/steps": η/W for W warm-up steps, i.e. η·(t + 1)/W, a ramp from (almost) zero.
WARMUP_STARTS = ("lr/N", "lr/steps")


def step_decay(
    lr: float,
    steps_per_epoch: int,
    decay_epochs: Sequence[float] = (),
    decay_factor: float = 0.1,
    warmup_epochs: float = 0.0,
    warmup_start: str = "lr/N",
    num_workers: int = 1,
) -> Callable[[int], float]:
    """η_t = lr · factor^(number of decay epochs ≤ t / steps_per_epoch), with a linear warm-up first.

    Warm-up: over the first W = round(warmup_epochs · steps_per_epoch) steps the rate rises linearly from
    the start s (``warmup_start``: lr/N or lr/W) to the decayed rate η, reaching it at step W - 1:
    η_t = s + (η - s)·t / (W - 1). Decay epochs are counted in data seen, so they mean the same whatever the
    number of workers.
    """
    boundaries = sorted(round(e * steps_per_epoch) for e in decay_epochs)
    warmup_steps = round(warmup_epochs * steps_per_epoch)
    start_fraction = 1.0 / num_workers if warmup_start == "lr/N" else 1.0 / max(warmup_steps, 1)

    def lr_at(step: int) -> float:
        rate = lr * decay_factor ** sum(step >= b for b in boundaries)
        if step < warmup_steps:
            rise = step / (warmup_steps - 1) if warmup_steps > 1 else 1.0
            rate *= start_fraction + (1.0 - start_fraction) * rise
        return rate

    return lr_at
