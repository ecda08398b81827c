"""The gradient actor: a ``Worker`` holds one model replica and the data, and computes any logical worker's
jobs. N logical workers run on any P actors (32 workers on 1, 4 or 32 actors): a job names its worker, whose
own batch stream the replica reads.

Points and gradients cross the object store as flat float32 numpy buffers: a point arrives zero-copy
(``as_tensor``), and a result leaves as numpy views on the CPU, or, on a GPU, through reused page-locked host
buffers (one DMA each).
"""

from __future__ import annotations

import socket
import warnings
from typing import Any

import numpy as np
import ray
import torch

from dana_ray.config import TrialConfig
from dana_ray.engine.build import build_replica
from dana_ray.engine.master import Job
from dana_ray.engine.ray.devices import hide_unreserved_gpus, reserved_device
from dana_ray.engine.replica import Replica
from dana_ray.engine.threads import torch_threads, use_threads


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor over ``array``'s memory, without a copy; object-store arrays are read-only, which is fine for
    everything the engine does with a received point or gradient (it only reads them)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def where_am_i() -> dict[str, str]:
    """This process's node id and host name (what an actor reports once it runs)."""
    return {"node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname()}


class Worker:
    """A gradient actor: one model replica serving any logical worker's jobs."""

    def __init__(self, config: dict, index: int) -> None:
        hide_unreserved_gpus()  # first: before anything touches CUDA
        self._pinned: dict[tuple[int, int], torch.Tensor] = {}  # (slot, size) -> page-locked host buffer
        self.replica: Replica | None = None
        self.reset(config, index)

    def reset(self, config: dict, index: int) -> None:
        """Serve a new trial: its model replica and worker side; the data set is kept if it is the same."""
        cfg = TrialConfig.received(config)
        use_threads(torch_threads(cfg.compute.cpus_per_actor, cfg.compute.cpu_threads))
        self.index, self.device = index, reserved_device(cfg.compute.device, cfg.compute.gpus_per_actor)
        self.vmap_jobs = cfg.compute.vmap_jobs
        if self.replica is not None:
            self.replica.close()
        self._pinned.clear()  # the last trial's page-locked buffers: a pooled actor's next model may differ
        self.replica = build_replica(cfg, self.device, decode_threads=torch_threads(cfg.compute.cpus_per_actor))

    def _replica(self) -> Replica:
        assert self.replica is not None  # built by __init__
        return self.replica

    def _to_host(self, tensors: list[torch.Tensor]) -> list[np.ndarray]:
        """Results as numpy arrays for the object store. On the CPU: views, no copy. On a GPU: one DMA each
        into a reused page-locked host buffer (a pageable destination would add the driver's staging copy);
        Ray then copies each buffer into the object store when the call returns, before the buffers are
        reused by the next call."""
        if self.device.type != "cuda":
            return [t.numpy() for t in tensors]
        out = []
        for slot, t in enumerate(tensors):
            key = (slot, t.numel())
            if key not in self._pinned:
                self._pinned[key] = torch.empty(t.numel(), dtype=t.dtype, pin_memory=True)
            out.append(self._pinned[key].copy_(t.reshape(-1)).numpy())
        torch.cuda.current_stream(self.device).synchronize()
        return out

    def ready(self) -> dict[str, str]:
        """Where this actor runs: its node's id and host name."""
        return where_am_i()

    def describe(self, with_params: bool = True) -> dict[str, Any]:
        """The model's initial state and the data's shape, for the server to build the master from (a
        sequencer asks without θ: its shards take it from ``initial_params``)."""
        replica = self._replica()
        params, bn_stats = replica.model.initial_state()
        info = {
            "bn_stats": bn_stats.cpu().numpy(),
            "bn_momentum": replica.model.bn_momentum,
            "num_classes": replica.data.num_classes,
            "steps_per_epoch": replica.steps_per_epoch,
            "num_params": params.numel(),
        }
        return dict(info, params=params.cpu().numpy()) if with_params else info

    def initial_params(self) -> np.ndarray:
        """The model's initial θ, flat (for a sharded server's shards, each of which takes its range)."""
        return self._replica().model.initial_state()[0].cpu().numpy()

    def _assembled(self, parts: tuple[np.ndarray, ...]) -> torch.Tensor:
        """One point on this actor's device from its shards' slices (in coordinate order)."""
        if len(parts) == 1:
            return as_tensor(parts[0]).to(self.device)
        return torch.cat([as_tensor(p) for p in parts]).to(self.device)

    def compute(
        self, worker: int, batch: int, point: np.ndarray, lr: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray, float, float]:
        """(gradient, BatchNorm statistics, loss, seconds computing it); ``lr``: η when the job was sent."""
        job = Job(worker, batch, as_tensor(point).to(self.device), sent_version=-1, lr=lr)
        result = self._replica().compute(job)
        grad, bn_stats = self._to_host([result.grad, result.bn_stats])
        return grad, bn_stats, result.loss, result.seconds

    def compute_many(
        self,
        workers: list[int],
        batches: list[int],
        *points: np.ndarray,
        shards: int = 1,
        lrs: list[float] | None = None,
    ) -> tuple:
        """Several jobs sent in one call (``jobs_per_call``), computed ``vmap_jobs`` at a time (1: one by one,
        exactly as ``compute``); called with ``num_returns=len(workers)``, so each job's result is its own
        object.

        ``shards`` = K > 1 (a sharded server): each job's point comes as K slices, assembled here, and its
        gradient goes back cut at the same places: per job K gradient slices, then (BatchNorm statistics,
        loss, seconds), each its own object (``num_returns=len(workers) * (K + 1)``), so each slice can go
        to its shard without passing through the sequencer."""
        parts = [points[k * shards : (k + 1) * shards] for k in range(len(workers))]
        lrs = lrs if lrs is not None else [0.0] * len(workers)
        jobs = [
            Job(w, b, self._assembled(p), sent_version=-1, lr=lr) for w, b, p, lr in zip(workers, batches, parts, lrs)
        ]
        replica = self._replica()
        results = [
            r for k in range(0, len(jobs), self.vmap_jobs) for r in replica.compute_many(jobs[k : k + self.vmap_jobs])
        ]
        host = self._to_host([t for r in results for t in (r.grad, r.bn_stats)])
        if shards == 1:
            return tuple((host[2 * k], host[2 * k + 1], r.loss, r.seconds) for k, r in enumerate(results))
        out: list = []
        for k, r in enumerate(results):
            grad, cut = host[2 * k], np.cumsum([len(p) for p in parts[k]])[:-1]
            out += [*np.split(grad, cut), (host[2 * k + 1], r.loss, r.seconds)]
        return tuple(out)

    def evaluate(self, bn_stats: np.ndarray, *params: np.ndarray) -> tuple[float, float]:
        """(test error %, test loss) at θ, given whole or as its shards' slices."""
        return self._replica().evaluate(self._assembled(params), as_tensor(bn_stats).to(self.device))

    def worker_side_state(self, next_batches: dict[int, int]) -> dict[int, tuple[int, dict[str, np.ndarray]]]:
        return {
            w: (b, {k: v.cpu().numpy() for k, v in tensors.items()})
            for w, (b, tensors) in self._replica().worker_side_state(next_batches).items()
        }

    def load_worker_side_state(self, state: dict[int, tuple[int, dict[str, np.ndarray]]]) -> None:
        self._replica().load_worker_side_state(
            {w: (b, {k: as_tensor(v) for k, v in tensors.items()}) for w, (b, tensors) in state.items()}
        )


RemoteWorker = ray.remote(Worker)
