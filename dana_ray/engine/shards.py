"""A parameter server split over K shards: θ and the rule's state cut into K coordinate ranges, one sequencer.

Every registered rule's update is per coordinate (``UpdateRule.per_coordinate``, a law the tests check on
every rule: ``dana_ray.testing.shard_law``), so K copies of the rule, each over its own range of θ and fed the
same sequence of (worker, gradient slice, delay), end exactly where one rule over all of θ ends. The parts:

* ``ParameterShard`` (one per range ``[start, stop)``): the rule over θ[start:stop], and the slice of each
  outstanding job's point it sent (rules that read the point, and the gap metric, need it). It applies
  gradient slices and hands out point slices, in the order the sequencer submits them.
* ``ShardedMaster`` (the sequencer): a ``Master`` whose rule is the *shadow* of the rule, the same rule over
  zero coordinates. It keeps everything that is not per coordinate (the step, learning-rate schedule, a
  synchronous round's bookkeeping, a running maximum of η, the schedule, BatchNorm statistics, outstanding
  jobs, delays) and decides the order of updates, but no d-sized array passes through it: a job's point is
  the K shards' handles to their slices (``Sharded``), which the gradient actor assembles, and a result's
  gradient is K handles to the slices the actor cut, which go to the shards directly. Per update it moves
  O(K) handles and a few numbers.
* ``ShardSet``: how the sequencer reaches its shards (the Ray executor's shard actors; ``LocalShards``, in
  process, for the tests).

Reductions across coordinates are combined from the shards: the gap ``||x - θ|| / sqrt(d)`` of each applied
gradient is the root of the shards' partial sums of squares (added when the epoch's metrics are taken, so
the sequencer never waits for a shard), and divergence is decided from the loss, at the sequencer.

Ranges are cut by position in the flat θ (``shard_bounds``), not by parameter tensor: a model's tensors
differ in size by orders of magnitude (ResNet-50's largest holds 2.4M of its 25.6M parameters, the smallest
64), so whole tensors cannot balance K shards, while equal byte ranges give each shard the same work and the
same traffic. Boundaries fall on multiples of ``ALIGN`` elements (64 bytes of float32, a cache line), so no
two shards' slices share a line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from dana_ray.algorithms import UpdateRule
from dana_ray.core.tensors import host_copy
from dana_ray.engine.master import Job, Master
from dana_ray.schedules import Schedule

#: Shard boundaries fall on multiples of this many elements.
ALIGN = 16


def shard_bounds(num_params: int, num_shards: int) -> list[int]:
    """K+1 increasing offsets cutting ``range(num_params)`` into K ranges as equal as ``ALIGN`` allows; the
    last ranges are empty when d < K * ALIGN."""
    if num_shards < 1:
        raise ValueError(f"server_shards: expected an integer >= 1, got {num_shards!r}")
    blocks = math.ceil(num_params / ALIGN)
    return [min(num_params, ALIGN * (blocks * k // num_shards)) for k in range(num_shards)] + [num_params]


@dataclass(frozen=True)
class Sharded:
    """A d-vector held as K slices elsewhere (a sharded server's point, or a gradient): handles to the
    slices in coordinate order, and the whole vector's size in bytes."""

    parts: tuple
    nbytes: int


class ParameterShard:
    """θ[start:stop] and the rule's state for those coordinates; the slices of the points it sent."""

    def __init__(self, rule: UpdateRule) -> None:
        self.rule = rule
        self.sent: dict[int, Tensor] = {}  # worker -> the slice of its outstanding job's point
        self._free: list[Tensor] = []  # applied jobs' slices, reused for the next points
        self._scratch = torch.empty_like(rule.params)

    def point_for(self, worker: int) -> Tensor:
        """Worker ``worker``'s next point, this shard's slice of it (kept until its gradient is applied)."""
        point = self.rule.params_for(worker, out=self._free.pop() if self._free else None)
        self.sent[worker] = point
        return point

    def sent_point(self, worker: int) -> Tensor:
        """The slice of worker ``worker``'s outstanding point (to send its job again)."""
        return self.sent[worker]

    def apply(self, worker: int, grad: Tensor, delay: int) -> float:
        """Apply worker ``worker``'s gradient slice (computed at the point sent to it); returns the partial
        sum of squares ``Σ (x - θ)²`` over this range, measured before (for the gap metric)."""
        point = self.sent.pop(worker)
        difference = torch.sub(point, self.rule.params, out=self._scratch)
        squares = float(torch.dot(difference, difference))
        self.rule.apply(worker, grad.to(self.rule.params), point=point, delay=delay)
        self._free.append(point)
        return squares

    def state_dict(self) -> dict:
        return {"rule": self.rule.state_dict(), "sent": {w: host_copy(p) for w, p in self.sent.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.rule.load_state_dict(state["rule"])
        self.sent = {w: p.to(self.rule.params).clone() for w, p in state["sent"].items()}
        self._free = []


class ShardLost(Exception):
    """Shard ``shard`` died; ``cause`` says why in one line."""

    def __init__(self, shard: int, cause: str) -> None:
        super().__init__(f"shard {shard} lost: {cause}")
        self.shard, self.cause = shard, cause


class ShardSet(Protocol):
    """How the sequencer reaches its K shards (calls are applied by each shard in the order they are made)."""

    bounds: list[int]

    def point_for(self, worker: int) -> tuple[Any, ...]:
        """Each shard's handle to its slice of worker ``worker``'s next point."""

    def sent_point(self, worker: int) -> tuple[Any, ...]:
        """Each shard's handle to its slice of worker ``worker``'s outstanding point."""

    def apply(self, worker: int, grads: tuple[Any, ...], delay: int) -> Any:
        """Give shard k gradient slice ``grads[k]``; returns a handle to the partial sums of squares."""

    def apply_then_point(self, worker: int, grads: tuple[Any, ...], delay: int) -> tuple[Any, tuple[Any, ...]]:
        """``apply``, then ``point_for`` the same worker, in one call to each shard: (its handle, the point's)."""

    def squares(self, handles: list[Any]) -> list[float]:
        """The total sum of squares behind each handle ``apply`` returned (waits for them)."""

    def states(self) -> list[dict]:
        """Each shard's ``state_dict``."""

    def load_states(self, states: list[dict]) -> None:
        """Load ``states[k]`` into shard k."""


def is_coordinate_state(shadow: Tensor) -> bool:
    """Whether a rule's state tensor is indexed by coordinate (shaped ``(..., d)``), seen on the shadow rule
    (d = 0): θ, momenta, running sums; not a per-worker flag (``(N,)``) or a scalar."""
    return shadow.dim() >= 1 and shadow.shape[-1] == 0


def join_rule_states(shadow: UpdateRule, parts: list[dict]) -> dict:
    """One rule's ``state_dict`` over all of θ from the K shards' (coordinate tensors joined along the last
    dimension; everything else, which every shard holds alike, from the shadow)."""
    state = shadow.state_dict()
    for key in shadow._tensor_state:
        if is_coordinate_state(getattr(shadow, key)):
            state[key] = torch.cat([part[key] for part in parts], dim=-1)
    return state


def split_rule_state(shadow: UpdateRule, state: dict, bounds: list[int]) -> list[dict]:
    """A whole rule's ``state_dict`` cut into the K shards' (the inverse of ``join_rule_states``)."""
    parts = []
    for start, stop in zip(bounds, bounds[1:]):
        parts.append(
            {
                key: (
                    value[..., start:stop].clone()
                    if key in shadow._tensor_state and is_coordinate_state(getattr(shadow, key))
                    else value
                )
                for key, value in state.items()
            }
        )
    return parts


class ShardedMaster(Master):
    """The sequencer: a ``Master`` whose θ lives in a ``ShardSet`` (see the module docstring)."""

    def __init__(
        self, shadow: UpdateRule, schedule: Schedule | None, bn_stats: Tensor, bn_momentum: float, shards: ShardSet
    ) -> None:
        if shadow.params.numel() != 0:
            raise ValueError(f"shadow: expected the rule over zero coordinates, got d = {shadow.params.numel()}")
        super().__init__(shadow, schedule, bn_stats, bn_momentum)
        self.shards = shards
        self.num_params = shards.bounds[-1]
        self._point_bytes = self.num_params * shadow.params.element_size()
        self._gaps: list[Any] = []  # the shards' handles to each applied gradient's squares, this epoch
        self._next_point: tuple | None = None  # an asynchronous step's next point, asked with its gradient

    def _apply_gradient(self, job: Job, grad: Sharded, delay: int) -> float:
        nothing = self.rule.params
        self.rule.apply(job.worker, nothing, point=nothing, delay=delay)  # the shadow: step and scalars
        if tuple(self.rule.workers_to_send(job.worker)) == (job.worker,):
            # the master issues this worker's next job next: its point comes with the same call
            gaps, self._next_point = self.shards.apply_then_point(job.worker, grad.parts, delay)
            self._gaps.append(gaps)
        else:
            self._gaps.append(self.shards.apply(job.worker, grad.parts, delay))
        return 0.0  # the gap is added when the shards have reported it (take_metrics)

    def _point_for(self, worker: int) -> Sharded:
        parts, self._next_point = self._next_point or self.shards.point_for(worker), None
        return Sharded(parts, self._point_bytes)

    def _release_point(self, point: Sharded) -> None:
        pass  # the shards reuse their own buffers

    def take_metrics(self) -> dict:
        squares, self._gaps = self.shards.squares(self._gaps), []
        self.metrics["gap_sum"] += sum(math.sqrt(s / max(self.num_params, 1)) for s in squares)
        return super().take_metrics()

    # -- checkpoints: the same format as one server's, so a checkpoint restores with any K ----------------

    def sequencer_state(self) -> dict:
        """Everything but the shards' (the outstanding jobs without their points); small."""
        return {
            **self._own_state(),
            "rule": self.rule.state_dict(),
            **self.jobs.state_dict(lambda job: None),
            "pending_gaps": list(self._gaps),
        }

    def load_sequencer_state(self, state: dict) -> None:
        """Restore ``sequencer_state``; the shards are restored apart (their own snapshot), so every
        outstanding job's point is asked of them again."""
        self.rule.load_state_dict(state["rule"])
        self._load_own_state(state)
        self._gaps = list(state["pending_gaps"])
        self.jobs.load_state_dict(state, lambda worker, _: Sharded(self.shards.sent_point(worker), self._point_bytes))
        self._time_unclocked_jobs()

    def state_dict(self) -> dict:
        states = self.shards.states()
        return {
            **self._own_state(),
            "rule": join_rule_states(self.rule, [s["rule"] for s in states]),
            **self.jobs.state_dict(lambda job: torch.cat([s["sent"][job.worker] for s in states])),
        }

    def load_state_dict(self, state: dict) -> None:
        rules = split_rule_state(self.rule, state["rule"], self.shards.bounds)
        points = {saved[0]: saved[2] for saved in state["outstanding"]}
        self.shards.load_states(
            [
                {"rule": rule, "sent": {w: p[start:stop] for w, p in points.items()}}
                for rule, start, stop in zip(rules, self.shards.bounds, self.shards.bounds[1:])
            ]
        )
        shadow = dict(state["rule"])
        for key in self.rule._tensor_state:
            if is_coordinate_state(getattr(self.rule, key)):
                shadow[key] = getattr(self.rule, key)
        self.load_sequencer_state({**state, "rule": shadow, "pending_gaps": []})


class LocalShards:
    """K ``ParameterShard``s in this process (the tests' ``ShardSet``); handles are the tensors themselves."""

    def __init__(self, make_rule: Callable[[Tensor], UpdateRule], params: Tensor, num_shards: int) -> None:
        self.bounds = shard_bounds(params.numel(), num_shards)
        self.shards = [
            ParameterShard(make_rule(params[start:stop].clone())) for start, stop in zip(self.bounds, self.bounds[1:])
        ]

    def point_for(self, worker: int) -> tuple[Tensor, ...]:
        return tuple(shard.point_for(worker).clone() for shard in self.shards)

    def sent_point(self, worker: int) -> tuple[Tensor, ...]:
        return tuple(shard.sent_point(worker).clone() for shard in self.shards)

    def apply(self, worker: int, grads: tuple[Tensor, ...], delay: int) -> float:
        return sum(shard.apply(worker, grad, delay) for shard, grad in zip(self.shards, grads))

    def apply_then_point(self, worker: int, grads: tuple[Tensor, ...], delay: int) -> tuple[float, tuple[Tensor, ...]]:
        return self.apply(worker, grads, delay), self.point_for(worker)

    def squares(self, handles: list[float]) -> list[float]:
        return list(handles)

    def states(self) -> list[dict]:
        return [shard.state_dict() for shard in self.shards]

    def load_states(self, states: list[dict]) -> None:
        for shard, state in zip(self.shards, states):
            shard.load_state_dict(state)

    @property
    def params(self) -> Tensor:
        return torch.cat([shard.rule.params for shard in self.shards])
