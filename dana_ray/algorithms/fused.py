"""One-pass server updates (``fused=True``): the momentum rules' elementwise math compiled into one loop.

Eager PyTorch runs every op as its own pass over the d floats. DANA's ``apply`` takes four passes and moves
12 d-vectors, but one loop over the elements needs only 7: it reads g, v_i, θ and Σ and writes v_i, θ and Σ.
For d in the millions the server is memory-bound, so the number of passes is the cost. ``torch.compile``
(Inductor: one C++/OpenMP loop on CPU, one Triton kernel on GPU) turns :func:`momentum_step_` into a single
loop over the elements.

The step's scalars (η, γ, λ) arrive as one small tensor rather than as Python floats. Floats would be
compiled in as constants, and a learning-rate schedule would then recompile every step.

Costs, measured on the 2-core CI machine:

* The first call in a process compiles: 11-16 s with a cold cache, about 3 s once Inductor's on-disk
  cache has the kernel.
* On CPU, Inductor needs a C++ compiler.
* Each variant compiles once per (d, dtype, device). A process that builds fused rules for more than 8 of
  them (a notebook trying many models) meets Dynamo's recompile limit; its error names the setting to
  raise, ``torch._dynamo.config.recompile_limit``.
* Results equal the eager rules' up to float rounding (the loop may contract multiply-adds differently),
  not bitwise. A fused run is reproducible, but it is not the eager run.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

#: Index of each scalar in the ``scalars`` tensor.
LR, MOMENTUM, DC_LAMBDA = 0, 1, 2


def momentum_step_(params: Tensor, velocity: Tensor, grad: Tensor, scalars: Tensor,
                   velocity_sum: Tensor | None = None, sent: Tensor | None = None) -> None:
    r"""In place, one pass over the elements, with (η, γ, λ) = ``scalars``:

        g  <- g + λ g ⊙ g ⊙ (θ - x)      if ``sent`` (x: the point the worker was sent; delay compensation)
        v' =  γ v + g
        Σ  <- Σ + v' - v                  if ``velocity_sum`` (DANA's running Σ_j v_j)
        v  <- v';   θ <- θ - η v'

    ``grad`` is only read.
    """
    lr, momentum = scalars[LR], scalars[MOMENTUM]
    if sent is not None:
        grad = grad + scalars[DC_LAMBDA] * grad * grad * (params - sent)
    new_velocity = grad + momentum * velocity
    if velocity_sum is not None:
        velocity_sum.copy_(velocity_sum + (new_velocity - velocity))
    velocity.copy_(new_velocity)
    params.copy_(params - lr * new_velocity)


# One entry point per variant: Dynamo keeps its compiled graphs, and its limit of 8 per code object, per
# entry point, so the variants do not compete for it. Shapes are static: a graph compiled for a symbolic d
# measured 5-10x slower here (benchmarks/server_update.py), and a process serves one model, so one d.

def _momentum(params: Tensor, velocity: Tensor, grad: Tensor, scalars: Tensor) -> None:
    momentum_step_(params, velocity, grad, scalars)


def _dana(params: Tensor, velocity: Tensor, grad: Tensor, scalars: Tensor, velocity_sum: Tensor) -> None:
    momentum_step_(params, velocity, grad, scalars, velocity_sum=velocity_sum)


def _compensated(params: Tensor, velocity: Tensor, grad: Tensor, scalars: Tensor, sent: Tensor) -> None:
    momentum_step_(params, velocity, grad, scalars, sent=sent)


def _compensated_dana(params: Tensor, velocity: Tensor, grad: Tensor, scalars: Tensor, velocity_sum: Tensor,
                      sent: Tensor) -> None:
    momentum_step_(params, velocity, grad, scalars, velocity_sum=velocity_sum, sent=sent)


_VARIANTS = {(False, False): _momentum, (True, False): _dana, (False, True): _compensated,
             (True, True): _compensated_dana}
_compiled: dict[Callable, Callable] = {}


def _compile_once(fn: Callable) -> Callable:
    """``fn`` compiled by ``torch.compile`` on first use, and shared by every rule in the process."""
    if fn not in _compiled:
        _compiled[fn] = torch.compile(fn, fullgraph=True, dynamic=False)
    return _compiled[fn]


def compiled_momentum_step(velocity_sum: bool, sent: bool) -> Callable[..., None]:
    """The compiled variant of :func:`momentum_step_` with (``velocity_sum``, ``sent``) given."""
    return _compile_once(_VARIANTS[(velocity_sum, sent)])


def _distance(a: Tensor, b: Tensor) -> Tensor:
    return torch.linalg.vector_norm(a - b)


def compiled_distance() -> Callable[[Tensor, Tensor], Tensor]:
    """``||a - b||`` compiled into one pass without a temporary vector (the master's gap with fused updates;
    ``benchmarks/server_update.py`` prints its cost next to the eager one). It is also accurate: Inductor sums
    in cascade, 1.5e-7 relative error against float64 over 25.6M normal differences."""
    return _compile_once(_distance)


class FusedMomentumStep:
    """A rule's handle on the compiled step: it holds the rule's θ and the (η, γ, λ) tensor.

    Calling it with ``(velocity, grad, lr, velocity_sum=None, sent=None)`` writes η into the tensor and runs
    the matching compiled variant of :func:`momentum_step_` on θ.
    """

    def __init__(self, params: Tensor, momentum: float) -> None:
        self.params = params
        self.scalars = torch.tensor([0.0, momentum, 0.0], dtype=params.dtype, device=params.device)  # η, γ, λ

    def set_dc_lambda(self, dc_lambda: float) -> None:
        self.scalars[DC_LAMBDA] = dc_lambda

    def __call__(self, velocity: Tensor, grad: Tensor, lr: float, velocity_sum: Tensor | None = None,
                 sent: Tensor | None = None) -> None:
        self.scalars[LR] = lr
        kernel = compiled_momentum_step(velocity_sum is not None, sent is not None)
        kernel(self.params, velocity, grad, self.scalars, *[t for t in (velocity_sum, sent) if t is not None])
