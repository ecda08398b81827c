"""The master's side of a trial, executor-agnostic: the rule, the arrival order, BatchNorm statistics, and
the jobs handed out to logical workers.

Which jobs are issued, their versions and delays, and a synchronous rule's rounds are the job protocol's
(``algorithms/jobs.py``, which the laws run too); which outstanding job is applied next is the schedule's
choice. Everything here is plain state, so ``state_dict()`` is a complete checkpoint of a trial,
outstanding jobs included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dana_ray.algorithms import UpdateRule
from dana_ray.algorithms.jobs import Job, JobProtocol
from dana_ray.algorithms.ops import compiled_distance
from dana_ray.core.tensors import host_copy
from dana_ray.engine.telemetry import Totals, tally
from dana_ray.schedules import Schedule
from dana_ray.schedules.clock import SimClock

#: A point or a gradient as the master holds it: a flat tensor, or on a sharded server the handles to its
#: shards' slices (``shards.Sharded``), which only the shards read.
Vector = Any


@dataclass
class GradientResult:
    grad: Vector  # ∇L + λ·point, flat (for a rule with a worker side: what the side made of the job);
    # a sharded server: the slices for its shards (``shards.Sharded``)
    bn_stats: Tensor  # the batch's BatchNorm statistics, flat (empty without BatchNorm)
    loss: float  # mean training loss of the batch at the point
    seconds: float = 0.0  # how long computing it took where it was computed (0: not measured)
    slot: int = -1  # which replica computed it (the dispatcher's slot; -1: the executor has none)


def nbytes(vector: Any) -> int:
    """The size in bytes of a point or gradient: a tensor, or anything with ``nbytes`` (``shards.Sharded``)."""
    return vector.numel() * vector.element_size() if isinstance(vector, Tensor) else vector.nbytes


class Master:
    def __init__(
        self, rule: UpdateRule, schedule: Schedule | None, bn_stats: Tensor, bn_momentum: float, fused: bool = False
    ) -> None:
        """``schedule=None``: no fixed order; the executor applies gradients as they arrive (``apply`` only).
        ``fused``: measure each gradient's gap in one compiled pass (else two eager passes)."""
        self.rule, self.schedule = rule, schedule
        self.bn_stats = bn_stats.clone()
        self.bn_momentum = bn_momentum
        self.jobs = JobProtocol(rule)
        self.diverged = False
        # the gap of every applied gradient, ||x - θ||: one compiled pass with fused updates, else two eager
        # passes through a scratch vector (no allocation per step either way)
        self._distance = compiled_distance() if fused else None
        self._scratch = None if fused else torch.empty_like(rule.params)
        self._free_points: list[Tensor] = []  # applied jobs' point buffers, reused for the next points
        self._reset_metrics()
        self.totals = Totals(rule.num_workers)  # for live telemetry: this process's running totals, never saved
        self.clock = SimClock(schedule.batch_time if schedule is not None else None, rule.local_steps)
        #: (worker, job, steps, seconds, slot) of each applied job since ``take_job_times``; None: not recorded
        self.job_times: list[tuple[int, int, int, float, int]] | None = None

    @property
    def step(self) -> int:
        return self.rule.step

    @property
    def num_workers(self) -> int:
        return self.rule.num_workers

    @property
    def outstanding(self) -> dict[int, Job]:
        return self.jobs.outstanding

    @property
    def version(self) -> int:
        """θ's changes so far: one per applied gradient, one per round for a synchronous rule."""
        return self.jobs.version

    @property
    def batches_issued(self) -> list[int]:
        return self.jobs.batches_issued

    def start(self) -> list[Job]:
        """Issue a job to every worker that has none (all of them, unless restored from a checkpoint)."""
        return self._started(self.jobs.start(self._point_for))

    def _started(self, jobs: list[Job]) -> list[Job]:
        for job in jobs:
            self.clock.start(job.worker, job.batch)
        return jobs

    def follows_arrival(self) -> bool:
        """Whether the executor applies results as they arrive (no schedule), not ``next_job``'s order."""
        return self.jobs.follows_arrival(self.schedule)

    def next_job(self) -> Job:
        """The outstanding job whose gradient the master applies next."""
        return self.outstanding[self.jobs.next_worker(self.schedule)]

    def apply(self, job: Job, result: GradientResult) -> list[Job]:
        """Apply ``job``'s gradient; returns the jobs this issues. A non-finite loss marks the trial diverged.

        ``job.point``'s buffer is reused for a later job's point: executors must be done with it (sent or
        computed) by the time they pass the job here."""
        self.jobs.check_outstanding(job)
        if not math.isfinite(result.loss):
            self.diverged = True
            return []
        self.clock.finish(job.worker, result.seconds)
        if self.job_times is not None:
            self.job_times.append((job.worker, job.batch, self.rule.local_steps, result.seconds, result.slot))
        delay = self.jobs.delay(job)
        gap = self._apply_gradient(job, result.grad, delay)
        if self.bn_stats.numel():
            self.bn_stats.lerp_(result.bn_stats.to(self.bn_stats), self.bn_momentum)
        self._release_point(job.point)
        self._record(delay, gap, result.loss)
        self.totals.record(job.worker, delay)
        return self._started(self.jobs.complete(job, self._point_for))

    def take_job_times(self) -> list[tuple[int, int, int, float, int]]:
        """The applied jobs' (worker, job, steps, seconds, slot) since the last call (recording starts with the
        first call)."""
        taken, self.job_times = self.job_times or [], []
        return taken

    def gap(self, point: Tensor) -> float:
        """RMS distance ``||x - θ|| / sqrt(d)`` between a point and the master's parameters now."""
        params = self.rule.params
        if self._distance is not None:
            return float(self._distance(point.to(params), params)) / math.sqrt(params.numel())
        difference = torch.sub(point.to(params), params, out=self._scratch)
        # a dot product: faster than vector_norm here (645 vs 899 us at d = 2.7M) and closer to float64
        return math.sqrt(float(torch.dot(difference, difference)) / params.numel())

    def next_batches(self) -> dict[int, int]:
        """Logical worker -> its outstanding job (where its worker-side state must stand)."""
        return self.jobs.next_batches()

    # -- where θ lives: here, in the rule (``engine/shards.ShardedMaster`` overrides these three) -----------

    def _apply_gradient(self, job: Job, grad: Vector, delay: int) -> float:
        """Apply ``grad`` (computed at ``job.point``) to the rule; returns the job's gap, measured before."""
        gap = self.gap(job.point)
        self.rule.apply(job.worker, grad.to(self.rule.params), point=job.point, delay=delay)
        return gap

    def _point_for(self, worker: int) -> Vector:
        """The point a new job of ``worker`` carries, written into an applied job's buffer where one is free."""
        return self.rule.params_for(worker, out=self._free_points.pop() if self._free_points else None)

    def _release_point(self, point: Vector) -> None:
        """An applied job's point: its buffer takes a later point (no allocation)."""
        self._free_points.append(point)

    # -- metrics ---------------------------------------------------------------------------------------------

    def _reset_metrics(self) -> None:
        self.metrics: dict[str, Any] = {
            "count": 0,
            "delay_sum": 0,
            "delay_max": 0,
            "gap_sum": 0.0,
            "loss_sum": 0.0,
            "delay_counts": [],
        }

    def _record(self, delay: int, gap: float, loss: float) -> None:
        m = self.metrics
        m["count"] += 1
        m["delay_sum"] += delay
        m["delay_max"] = max(m["delay_max"], delay)
        tally(m["delay_counts"], delay)
        m["gap_sum"] += gap
        m["loss_sum"] += loss

    def take_metrics(self) -> dict:
        """Over the gradients applied since the last call: mean/max delay, the delay histogram
        (``delay_histogram[d]``: how many had delay d), mean gap, train loss; and the rule's own figures
        (``UpdateRule.epoch_metrics``, e.g. gradients discarded so far)."""
        m, n = self.metrics, max(self.metrics["count"], 1)
        self._reset_metrics()
        return {
            "gradients": m["count"],
            "mean_delay": m["delay_sum"] / n,
            "max_delay": m["delay_max"],
            "delay_histogram": list(m["delay_counts"]),
            "mean_gap": m["gap_sum"] / n,
            "train_loss": m["loss_sum"] / n if m["count"] else math.nan,
            **self.rule.epoch_metrics(),
        }

    # -- checkpoints -----------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "rule": self.rule.state_dict(),
            **self._own_state(),
            **self.jobs.state_dict(lambda job: host_copy(job.point)),
        }

    def load_state_dict(self, state: dict) -> None:
        self.rule.load_state_dict(state["rule"])
        self._load_own_state(state)
        self.jobs.load_state_dict(state, lambda worker, point: point.to(self.rule.params))
        self._time_unclocked_jobs()

    def _own_state(self) -> dict:
        """The state that is the master's whatever holds θ or deals the jobs: schedule, statistics."""
        return {
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
            "bn_stats": host_copy(self.bn_stats),
            "diverged": self.diverged,
            "metrics": dict(self.metrics, delay_counts=list(self.metrics["delay_counts"])),
            "clock": self.clock.state_dict(),
        }

    def _time_unclocked_jobs(self) -> None:
        """Outstanding jobs restored from a checkpoint written before the clock existed start now."""
        for worker, job in self.outstanding.items():
            if worker not in self.clock.started:
                self.clock.start(worker, job.batch)

    def _load_own_state(self, state: dict) -> None:
        if self.schedule is not None:
            self.schedule.load_state_dict(state["schedule"])
        self.bn_stats.copy_(state["bn_stats"])
        self.diverged = bool(state["diverged"])
        self.metrics = dict(state["metrics"], delay_counts=list(state["metrics"].get("delay_counts", [])))
        self.clock.load_state_dict(state.get("clock") or {"now": 0.0, "started": {}})
