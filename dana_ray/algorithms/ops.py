"""The vocabulary update rules are written in, and the kernel that runs a rule's update eagerly or compiled.

Each rule writes its update ONCE, as a module-level function of in-place tensor steps and scalars
(η, γ, λ, ...). ``Kernel`` runs that function

* eagerly, with the scalars as Python floats: each step below is one ATen op (``torch.add(..., alpha=)``,
  ``out=`` into the state's own buffers), so an update allocates nothing; or
* compiled (``fused=True``): ``torch.compile`` turns the same function into one loop over the elements (a
  C++/OpenMP loop on CPU, a Triton kernel on GPU), with every scalar passed as a 0-d tensor, so a changing
  learning rate does not recompile.

The steps below pick their form from the scalar's type, so the same rule code serves both. Why this matters:
the server is memory-bound for d in the millions. Eager, each op is a pass over d floats (DANA's update: 4
passes moving 12 vectors); compiled, the update reads and writes each vector once (DANA: 7 vectors).

Costs of the compiled form (measured on the 2-core CI machine): the first call in a process compiles (about
11-16 s with a cold cache, 3 s once Inductor's on-disk cache has it); on CPU Inductor needs a C++ compiler;
every call pays about 20 us of dispatch; results equal the eager ones up to float rounding, not bitwise.
A process that compiles many (rule, d, dtype, device) combinations meets Dynamo's recompile limit, which
``Kernel`` raises to 64 per update function (``torch._dynamo.config.recompile_limit``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Scalar = float | Tensor

#: Dynamo's per-function recompile limit while dana_ray compiles (its default, 8, is met by a test suite or a
#: notebook building rules for many sizes; past it Dynamo silently runs the function eagerly).
RECOMPILE_LIMIT = 64


# -- the steps -------------------------------------------------------------------------------------------------


def scaled_add(y: Tensor, a: Scalar, x: Tensor, out: Tensor | None = None) -> Tensor:
    """``y + a·x``: into ``out`` if given, else in place into ``y``. One pass."""
    if isinstance(a, Tensor):
        return torch.add(y, x * a, out=out) if out is not None else y.add_(x * a)
    return torch.add(y, x, alpha=a, out=out) if out is not None else y.add_(x, alpha=a)


def scaled_addcmul(y: Tensor, a: Scalar, x1: Tensor, x2: Tensor, out: Tensor | None = None) -> Tensor:
    """``y + a·x1⊙x2``: into ``out`` if given (may be ``x1``), else in place into ``y``."""
    if isinstance(a, Tensor):
        return torch.add(y, x1 * x2 * a, out=out) if out is not None else y.add_(x1 * x2 * a)
    return torch.addcmul(y, x1, x2, value=a, out=out) if out is not None else y.addcmul_(x1, x2, value=a)


def momentum_(
    velocity: Tensor, momentum: Scalar, grad: Tensor, params: Tensor | None = None, weight_decay: Scalar = 0.0
) -> None:
    """``v <- γ v + g + λ θ`` in place (PyTorch's form of momentum; λθ only with master-side weight decay)."""
    scaled_add(grad, momentum, velocity, out=velocity)
    if isinstance(weight_decay, Tensor) or weight_decay:
        if params is None:
            raise ValueError("params: master-side weight decay adds λθ, so momentum_ needs θ")
        scaled_add(velocity, weight_decay, params)


def descend_(params: Tensor, lr: Scalar, direction: Tensor, weight_decay: Scalar = 0.0) -> None:
    """``θ <- θ - η (d + λ θ)`` in place (λθ only with master-side weight decay)."""
    if isinstance(weight_decay, Tensor) or weight_decay:
        params.mul_(1 - lr * weight_decay)
    scaled_add(params, -lr, direction)


def heavy_ball_(
    params: Tensor, velocity: Tensor, grad: Tensor, lr: Scalar, momentum: Scalar, weight_decay: Scalar = 0.0
) -> None:
    """``v <- γ v + g + λθ;  θ <- θ - η v``: one step of momentum SGD (``torch.optim.SGD``'s update)."""
    momentum_(velocity, momentum, grad, params, weight_decay)
    scaled_add(params, -lr, velocity)


# -- the kernel ------------------------------------------------------------------------------------------------

_compiled: dict[Callable, Callable] = {}


def compile_once(fn: Callable) -> Callable:
    """``fn`` compiled by ``torch.compile`` on first use, shared by every rule in the process. Shapes are
    static (a graph compiled for a symbolic d measured 5-10x slower here, and a process serves one model)."""
    if fn not in _compiled:
        import torch._dynamo

        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        _compiled[fn] = torch.compile(fn, fullgraph=True, dynamic=False)
    return _compiled[fn]


class Kernel:
    """A rule's update function, run eagerly or compiled (``fused``).

    Called as ``kernel(*tensors, **scalars)``: tensors (and None) are passed through; compiled, each float
    scalar is written into a 0-d tensor the kernel keeps (on ``like``'s device and dtype) and passed as that
    tensor. ``fn`` must be a module-level function: Dynamo keeps compiled graphs per code object.
    """

    def __init__(self, fn: Callable[..., None], fused: bool, like: Tensor) -> None:
        self.fn, self.fused, self._like = fn, fused, like
        self._slots: dict[str, Tensor] = {}

    def __call__(self, *tensors: Tensor | None, **scalars) -> None:
        if not self.fused:
            self.fn(*tensors, **scalars)
            return
        passed = {}
        for name, value in scalars.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                slot = self._slots.get(name)
                if slot is None:
                    slot = self._slots[name] = torch.zeros((), dtype=self._like.dtype, device=self._like.device)
                slot.fill_(value)
                passed[name] = slot
            else:
                passed[name] = value
        compile_once(self.fn)(*tensors, **passed)


def _distance(a: Tensor, b: Tensor) -> Tensor:
    return torch.linalg.vector_norm(a - b)


def compiled_distance() -> Callable[[Tensor, Tensor], Tensor]:
    """``||a - b||`` compiled into one pass without a temporary vector (the master's gap with fused updates;
    ``benchmarks/server_update.py`` prints its cost next to the eager one). It is also accurate: Inductor sums
    in cascade, 1.5e-7 relative error against float64 over 25.6M normal differences."""
    return compile_once(_distance)
