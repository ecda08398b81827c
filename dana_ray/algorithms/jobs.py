"""The job protocol, written once: the engine's ``Master`` and the laws the tests check both run it.

A *job* is "logical worker i, compute your job b at this point". The protocol keeps, for a rule:

- **issue**: one job outstanding per worker at the start; afterwards the rule says which workers get a new
  job once a result was applied (``UpdateRule.workers_to_send``: an asynchronous rule, that worker; a
  ``RoundRule``, nobody until the round is complete, then everybody). Worker i's jobs are numbered
  0, 1, 2, ... (``batch``); a job of H local steps computes batches b·H ... b·H + H - 1 of i's stream;
- **version**: how many times θ has changed (the rule's ``moved``: not for an open round's results, nor
  for a discarded gradient);
- **delay** τ of a result: the versions between the job's issue and the result's application;
- **order**: which outstanding job is applied next: the schedule's choice, or for a synchronous rule the
  lowest worker index still outstanding in the round (``rule.synchronous`` is read here and nowhere else).

Where the points come from (the rule's ``params_for``, or a sharded server's shards) is the caller's:
``point_for(worker)``. Plain state, so ``state_dict`` is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dana_ray.algorithms.base import UpdateRule


@dataclass
class Job:
    worker: int  # logical worker index
    batch: int  # the job's number in that worker's sequence (its batches: batch·H ... batch·H + H - 1)
    point: Any  # the parameters it was sent (a tensor; a sharded server: its shards' slices)
    sent_version: int  # how many times the master's parameters had changed when it was sent
    lr: float = 0.0  # η when it was sent (a worker side's inner learning rate)


PointFor = Callable[[int], Any]


class JobProtocol:
    """Issue, apply, version, delay and rounds for one rule (see the module docstring)."""

    def __init__(self, rule: UpdateRule) -> None:
        self.rule = rule
        self.batches_issued = [0] * rule.num_workers  # jobs issued so far, per worker
        self.outstanding: dict[int, Job] = {}
        self.version = 0

    def start(self, point_for: PointFor) -> list[Job]:
        """A job for every worker that has none (all of them, unless restored from a checkpoint)."""
        return [self.issue(i, point_for) for i in range(self.rule.num_workers) if i not in self.outstanding]

    def issue(self, worker: int, point_for: PointFor) -> Job:
        job = Job(worker, self.batches_issued[worker], point_for(worker), self.version, self.rule.lr_at(self.rule.step))
        self.batches_issued[worker] += 1
        self.outstanding[worker] = job
        return job

    def follows_arrival(self, schedule: Iterator[int] | None) -> bool:
        """Whether the executor applies results in the order they arrive (no schedule, asynchronous rule)."""
        return schedule is None and not self.rule.synchronous

    def next_worker(self, schedule: Iterator[int] | None) -> int:
        """The worker whose outstanding job is applied next: a round's lowest index, else the schedule's."""
        if self.rule.synchronous:
            return min(self.outstanding)
        if schedule is None:
            raise ValueError("schedule: none is set (arrival order), so the executor picks the next job")
        return next(schedule)

    def check_outstanding(self, job: Job) -> None:
        if self.outstanding.get(job.worker) is not job:
            raise ValueError(f"job: worker {job.worker}'s job (batch {job.batch}) is not outstanding")

    def delay(self, job: Job) -> int:
        return self.version - job.sent_version

    def complete(self, job: Job, point_for: PointFor) -> list[Job]:
        """After the rule applied ``job``'s result: the version moves if θ did, and the jobs this issues."""
        del self.outstanding[job.worker]
        if self.rule.moved:
            self.version += 1
        return [self.issue(worker, point_for) for worker in self.rule.workers_to_send(job.worker)]

    def next_batches(self) -> dict[int, int]:
        """Logical worker -> the job it computes next (where its worker-side state must stand): its outstanding
        job, or for a worker waiting for a synchronous round to complete, the job it will be issued."""
        return {
            w: self.outstanding[w].batch if w in self.outstanding else self.batches_issued[w]
            for w in range(self.rule.num_workers)
        }

    # -- checkpoints -------------------------------------------------------------------------------------------

    def state_dict(self, point_of: Callable[[Job], Any]) -> dict:
        return {
            "batches_issued": list(self.batches_issued),
            "version": self.version,
            "outstanding": [(j.worker, j.batch, point_of(j), j.sent_version, j.lr) for j in self.outstanding.values()],
        }

    def load_state_dict(self, state: dict, point_of: Callable[[int, Any], Any]) -> None:
        """``point_of(worker, saved point)``: the restored job's point."""
        self.batches_issued = list(state["batches_issued"])
        self.version = int(state["version"])
        self.outstanding = {}
        for worker, batch, point, sent_version, *lr in state["outstanding"]:
            self.outstanding[worker] = Job(
                worker, batch, point_of(worker, point), sent_version, lr[0] if lr else self.rule.lr_at(self.rule.step)
            )
