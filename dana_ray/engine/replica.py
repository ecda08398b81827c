"""The worker's side: compute a job's gradient (any logical worker's), and evaluate parameters."""

from __future__ import annotations

import time

import torch
from torch import Tensor

from dana_ray.algorithms.base import GradientAt, WorkerSide
from dana_ray.data import DataSet, Streams, eval_batches
from dana_ray.engine.flat import FlatModel
from dana_ray.engine.master import GradientResult, Job


def _computed(grad: Tensor) -> GradientAt:
    """``gradient(x, h)`` for a job whose one gradient was computed already (with the others, by vmap)."""
    return lambda x, h: grad


class _NoWorkerSide:
    """The worker side of a rule that keeps no state there: the job's gradient is what the worker sends."""

    local_steps = 1

    def run(self, worker: int, job: int, point: Tensor, lr: float, gradient: GradientAt) -> Tensor:
        return gradient(point, 0)

    def state_dict(self, next_job: dict[int, int]) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"worker_side: this rule keeps no worker-side state, got it for workers {sorted(state)}")


class Replica:
    """One model replica and the data; serves every logical worker (their streams differ, not the model)."""

    def __init__(
        self,
        model: FlatModel,
        data: DataSet,
        batch_size: int,
        seed: int,
        weight_decay: float,
        eval_batch_size: int = 1000,
        worker_side: WorkerSide | None = None,
        prefetch: int = 2,
    ) -> None:
        """``worker_side``: the rule's per-logical-worker part (e.g. momenta, local steps), or None; with it,
        a job's result carries what the side made of the job (``WorkerSide.run``), what such a rule's workers
        send. ``prefetch``: batches of a slow (file-decoded) data set prepared ahead while the model computes."""
        self.model, self.data = model, data
        self.worker_side = worker_side if worker_side is not None else _NoWorkerSide()
        self.local_steps = self.worker_side.local_steps
        self.batch_size, self.seed, self.weight_decay = batch_size, seed, weight_decay
        self.eval_batch_size = eval_batch_size
        # jobs per epoch, whatever N: an epoch is len(train) // batch_size batches, H to a job
        self.steps_per_epoch = max(1, len(data.train) // batch_size // self.local_steps)
        self.streams = Streams(data.train, batch_size, seed, prefetch)

    def compute(self, job: Job) -> GradientResult:
        """The job's result: its batch's gradient at its point, through the worker side (with H local steps,
        H batches, their BatchNorm statistics and losses averaged)."""
        started = time.perf_counter()
        stats: list[Tensor] = []
        losses: list[float] = []

        def gradient(x: Tensor, h: int) -> Tensor:
            images, labels = self.streams.batch(job.worker, job.batch * self.local_steps + h)
            torch.manual_seed(job_seed(self.seed, job.worker, job.batch * self.local_steps + h))  # dropout
            grad, bn_stats, loss = self.model.gradient(x, images, labels, self.weight_decay)
            stats.append(bn_stats)
            losses.append(loss)
            return grad

        sent = self.worker_side.run(job.worker, job.batch, job.point, job.lr, gradient)
        bn_stats = stats[0] if len(stats) == 1 else torch.stack(stats).mean(0)
        return GradientResult(sent, bn_stats, sum(losses) / len(losses), self._since(started))

    def compute_many(self, jobs: list[Job]) -> list[GradientResult]:
        """Several jobs' results; more than one are computed together (``FlatModel.gradients``, vmap), unless
        the jobs take local steps (each job's steps depend on the one before: computed job by job)."""
        if len(jobs) == 1 or self.local_steps > 1:
            return [self.compute(job) for job in jobs]
        started = time.perf_counter()
        batches = [self.streams.batch(job.worker, job.batch) for job in jobs]
        torch.manual_seed(job_seed(self.seed, jobs[0].worker, jobs[0].batch))  # dropout: per call of B jobs
        points = torch.stack([job.point for job in jobs])
        grads, stats, losses = self.model.gradients(
            points, torch.stack([x for x, _ in batches]), torch.stack([y for _, y in batches]), self.weight_decay
        )
        share = self._since(started) / len(jobs)
        return [
            GradientResult(
                self.worker_side.run(job.worker, job.batch, job.point, job.lr, _computed(grads[k])),
                stats[k],
                float(losses[k]),
                share,
            )
            for k, job in enumerate(jobs)
        ]

    def _since(self, started: float) -> float:
        """Seconds of compute since ``started``: on a GPU, once its queued kernels have run (else the time
        measured is that of launching them, and ``jobs_per_call: auto`` would size calls by it)."""
        if self.model.device.type == "cuda":
            torch.cuda.synchronize(self.model.device)
        return time.perf_counter() - started

    def worker_side_state(self, next_batch: dict[int, int]) -> dict:
        """The worker-side state of the logical workers held here, as of their next batch (worker -> batch)."""
        return self.worker_side.state_dict(next_batch)

    def load_worker_side_state(self, state: dict) -> None:
        self.worker_side.load_state_dict(
            {w: (b, {k: v.to(self.model.device) for k, v in tensors.items()}) for w, (b, tensors) in state.items()}
        )

    def close(self) -> None:
        self.streams.close()

    def evaluate(self, params: Tensor, bn_stats: Tensor) -> tuple[float, float]:
        """``(test error %, test loss)`` at the given master state."""
        return self.model.evaluate(params, bn_stats, eval_batches(self.data.test, self.eval_batch_size))


def job_seed(seed: int, worker: int, batch: int) -> int:
    """The seed of the random numbers (dropout) of worker ``worker``'s batch ``batch`` in a trial seeded
    ``seed``: a function of the job alone, so they are the same whichever process computes it, after
    whatever it computed before."""
    return ((seed * 1_000_003 + worker) * 1_000_000_007 + batch) % 2**63
