"""The local executor: the master and one model replica in one process (tests, laptops, one GPU).

Gradients are computed when the master applies them: the result is the same as computing each job when it
is issued, since a job fixes its point and batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from dana_ray.config import TrialConfig
from dana_ray.engine.build import build_master, build_replica
from dana_ray.engine.loop import MasterLoop
from dana_ray.engine.master import GradientResult, Job
from dana_ray.engine.telemetry import Sink
from dana_ray.engine.threads import torch_threads, use_threads


class LocalExecutor(MasterLoop):
    @classmethod
    def launch(
        cls,
        cfg: TrialConfig,
        name: str | None = None,
        placement_group: Any = None,
        reuse: bool = False,
        metrics: Callable[[], Sink] | None = None,
    ) -> LocalExecutor:
        """The registry's ``make`` (``config/executors.py``): ``metrics`` makes the trial's sink, or None."""
        return cls(cfg, metrics() if metrics is not None else None)

    def __init__(self, cfg: TrialConfig, sink: Sink | None = None) -> None:
        """``sink``: where the trial's live figures go (``MasterLoop.watch``); its "waiting" is the time spent
        computing gradients, so the busy fraction is the share of stepping spent on the master's side."""
        # the thread count of a gradient actor reserving as much: CPU sums, and so the numbers, depend on it
        self._threads = use_threads(torch_threads(cfg.compute.cpus_per_actor, cfg.compute.cpu_threads))
        self.replica = build_replica(cfg)
        self.steps_per_epoch = self.replica.steps_per_epoch
        self.num_classes = self.replica.data.num_classes
        params, bn_stats = self.replica.model.initial_state()
        self.num_params = params.numel()
        self.master = build_master(cfg, params, bn_stats, self.replica.model.bn_momentum, self.steps_per_epoch)
        self.master.start()
        self.watch(sink)
        self.vmap_jobs = cfg.compute.vmap_jobs
        self._computed: dict[tuple[int, int], GradientResult] = {}  # (worker, batch) -> result, ahead of use

    def run_steps(self, steps: int) -> None:
        for _ in range(steps):
            if self.master.diverged:
                return
            job = self.master.next_job()
            started = time.perf_counter()
            result = self._result(job)
            self.traffic.waiting_s += time.perf_counter() - started
            self.master.apply(job, result)
            self.telemetry.tick()

    def _result(self, job: Job) -> GradientResult:
        """The job's result; with ``vmap_jobs`` > 1, computed together with other outstanding jobs not yet
        computed (a job's result depends only on the job, so computing it early changes nothing)."""
        if self.vmap_jobs == 1:
            return self.replica.compute(job)
        if (job.worker, job.batch) not in self._computed:
            others = [
                j
                for w, j in sorted(self.master.outstanding.items())
                if j is not job and (w, j.batch) not in self._computed
            ]
            group = [job, *others[: self.vmap_jobs - 1]]
            for done, result in zip(group, self.replica.compute_many(group)):
                self._computed[done.worker, done.batch] = result
        return self._computed.pop((job.worker, job.batch))

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._computed.clear()

    def worker_side_state(self, next_batches: dict[int, int]) -> dict:
        return self.replica.worker_side_state(next_batches)

    def load_worker_side_state(self, state: dict) -> None:
        self.replica.load_worker_side_state(state)

    def evaluate(self) -> tuple[float, float]:
        return self.replica.evaluate(self.master.rule.params, self.master.bn_stats)

    def close(self, reusable: bool = False) -> None:
        self.replica.close()
        torch.set_num_threads(self._threads)
