"""The worker's side: compute a job's gradient (any logical worker's), and evaluate parameters."""

from __future__ import annotations

import time

import torch
from torch import Tensor

from dana_ray.algorithms import WorkerMomentum
from dana_ray.data import DataSet, Streams, eval_batches
from dana_ray.engine.flat import FlatModel
from dana_ray.engine.master import GradientResult, Job


class _NoWorkerSide:
    """The worker side of a rule that keeps no state there: the gradient is what the worker sends."""

    def update(self, worker: int, batch: int, grad: Tensor) -> Tensor:
        return grad

    def state_dict(self, next_batch: dict[int, int]) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"worker_side: this rule keeps no worker-side state, got it for workers {sorted(state)}")


class GradientWorker:
    """One model replica and the data; serves every logical worker (their streams differ, not the model)."""

    def __init__(self, model: FlatModel, data: DataSet, batch_size: int, seed: int, weight_decay: float,
                 eval_batch_size: int = 1000, worker_side: WorkerMomentum | None = None, prefetch: int = 2) -> None:
        """``worker_side``: the rule's per-logical-worker state (e.g. momenta), or None; with it, a job's
        result carries ``worker_side.update(...)`` of the gradient, what such a rule's workers send.
        ``prefetch``: batches of a slow (file-decoded) data set prepared ahead while the model computes."""
        self.model, self.data = model, data
        self.worker_side = worker_side if worker_side is not None else _NoWorkerSide()
        self.batch_size, self.seed, self.weight_decay = batch_size, seed, weight_decay
        self.eval_batch_size = eval_batch_size
        self.steps_per_epoch = len(data.train) // batch_size  # gradients per epoch, whatever N
        self.streams = Streams(data.train, batch_size, seed, prefetch)

    def compute(self, job: Job) -> GradientResult:
        started = time.perf_counter()
        x, y = self.streams.batch(job.worker, job.batch)
        grad, bn_stats, loss = self.model.gradient(job.point, x, y, self.weight_decay)
        return GradientResult(self.worker_side.update(job.worker, job.batch, grad), bn_stats, loss,
                              time.perf_counter() - started)

    def compute_many(self, jobs: list[Job]) -> list[GradientResult]:
        """Several jobs' results; more than one are computed together (``FlatModel.gradients``, vmap)."""
        if len(jobs) == 1:
            return [self.compute(jobs[0])]
        started = time.perf_counter()
        batches = [self.streams.batch(job.worker, job.batch) for job in jobs]
        points = torch.stack([job.point for job in jobs])
        grads, stats, losses = self.model.gradients(points, torch.stack([x for x, _ in batches]),
                                                    torch.stack([y for _, y in batches]), self.weight_decay)
        share = (time.perf_counter() - started) / len(jobs)
        return [GradientResult(self.worker_side.update(job.worker, job.batch, grads[k]), stats[k], float(losses[k]),
                               share) for k, job in enumerate(jobs)]

    def worker_side_state(self, next_batch: dict[int, int]) -> dict:
        """The worker-side state of the logical workers held here, as of their next batch (worker -> batch)."""
        return self.worker_side.state_dict(next_batch)

    def load_worker_side_state(self, state: dict) -> None:
        self.worker_side.load_state_dict({w: (b, v.to(self.model.device)) for w, (b, v) in state.items()})

    def close(self) -> None:
        self.streams.close()

    def evaluate(self, params: Tensor, bn_stats: Tensor) -> tuple[float, float]:
        """``(test error %, test loss)`` at the given master state."""
        return self.model.evaluate(params, bn_stats, eval_batches(self.data.test, self.eval_batch_size))
