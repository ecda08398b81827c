"""The contract every master-side update rule keeps, and the checks they share.

A rule owns the master's state for ONE flat parameter vector: the master's parameters ``params`` (θ), its
momentum buffers and a step counter. Two calls drive it (cf. optax's init/update pair and PyTorch's
``Optimizer.state_dict``):

* ``apply(i, g)``: the master applies the gradient ``g`` that logical worker ``i`` computed;
* ``params_for(i)``: the point the master sends worker ``i`` now (a fresh tensor, safe to keep; or
  written into a recycled buffer, ``params_for(i, out=buffer)``).

"The master's θ" and "what worker i receives" are different things for the look-ahead rules, and the API
keeps them apart. ``fused=True`` runs a fusable rule's ``apply`` as one compiled pass (``fused.py``): the
same math and state, equal up to float rounding. All state is allocated at construction; ``state_dict()``
returns plain tensors and ints and ``load_state_dict()`` restores them exactly.

Conventions shared by every rule (PyTorch's form of momentum, not Sutskever's):

    v <- γ v + g;   θ <- θ - η_t v;   v starts at zero.

η_t is the learning rate at step t, where t counts gradients applied so far (so a schedule written in
epochs means the same amount of data whatever the number of workers). Weight decay is part of ``g``: the
worker computes ``g = ∇L(x) + λ x`` at the point ``x`` it was sent, so rules never see λ.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Union

import torch
from torch import Tensor

from dana_ray.checks import check_bool, check_integer, check_number

LearningRate = Union[float, Callable[[int], float]]


class UpdateRule:
    """Base class: validation, the learning-rate schedule, the step counter and (de)serialisation.

    Subclasses set ``name``, list their extra tensors in ``_tensor_state``, allocate them in ``__init__``
    and implement ``_apply(worker, grad, lr)`` (and ``_params_for(worker, out)`` where they send something other
    than θ).
    """

    name: ClassVar[str] = ""
    #: True when the rule combines one gradient from every worker before it moves θ (SSGD). Executors then
    #: hand every worker the same θ each round instead of following an arrival schedule.
    synchronous: ClassVar[bool] = False
    #: Names of the extra keyword arguments the rule takes (``algorithm_options`` in a trial config).
    options: ClassVar[tuple[str, ...]] = ()
    #: State the rule keeps on the worker side, per logical worker (a class built with ``momentum``; see
    #: ``WorkerMomentum``), or None. Workers then send ``worker_side.update(...)`` instead of the gradient,
    #: and executors keep each logical worker's state with the replica that computes its gradients.
    worker_side: ClassVar[Any] = None
    #: True when ``fused=True`` runs the update as one compiled pass (``fused.py``); False for rules whose
    #: per-gradient update is one eager pass already (they ignore ``fused``).
    fusable: ClassVar[bool] = False
    _tensor_state: ClassVar[tuple[str, ...]] = ("params",)

    def __init__(self, params: Tensor, num_workers: int, lr: LearningRate, momentum: float, *,
                 fused: bool = False) -> None:
        if not isinstance(params, Tensor) or params.dim() != 1 or not params.is_floating_point():
            raise ValueError(
                f"params: expected a 1-D floating-point tensor, got "
                f"{type(params).__name__}{tuple(params.shape) if isinstance(params, Tensor) else ''}"
            )
        check_integer("num_workers", num_workers, minimum=1)
        if not callable(lr):
            check_number("lr", lr, low=0.0)
        check_number("momentum", momentum, low=0.0, below=1.0)
        check_bool("fused", fused)
        self.params: Tensor = params.detach().clone()
        self.num_workers: int = num_workers
        self.momentum: float = float(momentum)
        self.step: int = 0
        self.fused: bool = fused  # see ``fusable``
        self._lr = lr

    # -- the two calls -------------------------------------------------------------------------------------

    def apply(self, worker: int, grad: Tensor) -> None:
        """Apply the gradient worker ``worker`` computed at the point it was last sent."""
        self._check_worker(worker)
        if not isinstance(grad, Tensor) or grad.dim() != 1 or grad.numel() != self.params.numel():
            shape = tuple(grad.shape) if isinstance(grad, Tensor) else type(grad).__name__
            raise ValueError(f"grad: expected a 1-D tensor of {self.params.numel()} elements, got {shape}")
        self._apply(worker, grad, self.lr_at(self.step))
        self.step += 1

    def params_for(self, worker: int, out: Tensor | None = None) -> Tensor:
        """The point the master sends worker ``worker`` now: a new tensor, unaffected by later updates; or,
        with ``out`` (a buffer shaped like θ that the caller no longer needs, e.g. an applied job's point),
        written into ``out`` and returned, without allocating."""
        self._check_worker(worker)
        if out is not None and (out.shape != self.params.shape or out.dtype != self.params.dtype
                                or out.device != self.params.device):
            raise ValueError(f"out: expected a {self.params.dtype} tensor of shape {tuple(self.params.shape)} on "
                             f"{self.params.device}, got {out.dtype} {tuple(out.shape)} on {out.device}")
        return self._params_for(worker, out)

    def lr_at(self, step: int) -> float:
        """η at ``step`` (gradients applied so far), from the constant or the schedule."""
        if not callable(self._lr):
            return float(self._lr)
        value = self._lr(step)
        check_number(f"lr({step})", value, low=0.0)
        return float(value)

    # -- for subclasses ------------------------------------------------------------------------------------

    def _apply(self, worker: int, grad: Tensor, lr: float) -> None:
        raise NotImplementedError

    def _params_for(self, worker: int, out: Tensor | None) -> Tensor:
        return self.params.clone() if out is None else out.copy_(self.params)

    def _zeros(self, *leading: int) -> Tensor:
        """A zero buffer shaped ``(*leading, d)`` on θ's device and dtype."""
        return torch.zeros(*leading, self.params.numel(), dtype=self.params.dtype, device=self.params.device)

    # -- checkpoints ---------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Plain tensors (copies) and ints; ``load_state_dict`` restores them exactly."""
        state: dict = {"name": self.name, "num_workers": self.num_workers, "step": self.step}
        for key in self._tensor_state:
            state[key] = getattr(self, key).clone()
        return state

    def load_state_dict(self, state: dict) -> None:
        expected = {"name", "num_workers", "step", *self._tensor_state}
        if set(state) != expected:
            raise ValueError(f"state_dict: expected keys {sorted(expected)}, got {sorted(state)}")
        if state["name"] != self.name or state["num_workers"] != self.num_workers:
            raise ValueError(
                f"state_dict: saved by {state['name']!r} with num_workers={state['num_workers']}, "
                f"loading into {self.name!r} with num_workers={self.num_workers}"
            )
        for key in self._tensor_state:
            mine, saved = getattr(self, key), state[key]
            if tuple(saved.shape) != tuple(mine.shape):
                raise ValueError(f"state_dict[{key!r}]: expected shape {tuple(mine.shape)}, got {tuple(saved.shape)}")
        for key in self._tensor_state:
            getattr(self, key).copy_(state[key])
        self.step = int(state["step"])

    # -- checks --------------------------------------------------------------------------------------------

    def _check_worker(self, worker: int) -> None:
        if isinstance(worker, bool) or not isinstance(worker, int) or not 0 <= worker < self.num_workers:
            raise ValueError(f"worker: expected an integer in [0, {self.num_workers - 1}], got {worker!r}")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, d={self.params.numel()}, "
                f"num_workers={self.num_workers}, momentum={self.momentum}, step={self.step})")

