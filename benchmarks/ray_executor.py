"""Ray executor benchmarks; every figure is a ratio measured in this one run.

1. The same small trial (embedded digits, N = 8 DANA workers, round robin, one epoch) on the local executor
   and on the Ray executor with P = 1 and 2 actors: the time of the training epoch (steady state), and the
   whole run including starting the actors. Same cpu_threads everywhere, and the same params_sha256.
2. Server throughput at d = 1M: our ParameterServer (DANA, N logical workers on P stub actors that answer
   every job with a precomputed gradient at once) against the pattern of Ray's async parameter-server
   example, written from its description: the driver loops on ``ray.wait`` over the workers' gradient
   refs, sends the first ready one to a parameter-server actor (``apply_gradients``: sum, SGD step, return
   the weights as a torch state dict), and hands the new weights ref to that worker.

    python benchmarks/ray_executor.py [--updates 400] [--dim 1000000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import ray
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from dana_ray.engine.ray_executor import RemoteParameterServer  # noqa: E402
from dana_ray.trial import run  # noqa: E402

TRIAL = dict(algorithm="dana", num_workers=8, epochs=1, lr_decay_epochs=[], cpu_threads=1)


def trial_ratios() -> None:
    local = run(TRIAL)
    rows = [("local", local)]
    for actors in (1, 2):
        rows.append((f"ray P={actors}", run(dict(TRIAL, num_actors=actors, cpus_per_actor=0.5, server_cpus=0.5),
                                            executor="ray")))
    epoch = lambda r: r["history"][0]["gradients"] / r["history"][0]["gradients_per_s"]  # noqa: E731
    print("1. One epoch of digits, DANA, N = 8 (cpu_threads = 1)")
    print(f"   {'executor':<10} {'epoch s':>8} {'run s':>7} {'epoch/local':>12} {'run/local':>10}  params_sha256")
    for label, r in rows:
        print(f"   {label:<10} {epoch(r):>8.3f} {r['wall_time_s']:>7.2f} {epoch(r) / epoch(local):>12.2f} "
              f"{r['wall_time_s'] / local['wall_time_s']:>10.2f}  {r['params_sha256'][:16]}")


def stub_worker_class(dim: int):
    """A gradient actor that answers every job at once with a precomputed gradient of ``dim`` floats."""

    class StubWorker:
        def __init__(self, config: dict, index: int) -> None:
            self.grad = np.random.default_rng(index).standard_normal(dim).astype(np.float32) * 1e-3

        def ready(self) -> dict:
            return {"node_id": ray.get_runtime_context().get_node_id(), "host": "stub"}

        def describe(self) -> dict:
            return {"params": np.zeros(dim, np.float32), "bn_stats": np.zeros(0, np.float32), "bn_momentum": 0.1,
                    "num_classes": 10, "steps_per_epoch": 1}

        def compute(self, worker: int, batch: int, point: np.ndarray):
            return self.grad, np.zeros(0, np.float32), 0.0

        def evaluate(self, params, bn_stats):
            return 0.0, 0.0

    return ray.remote(StubWorker)


def ours(dim: int, num_workers: int, actors: int, updates: int) -> float:
    config = dict(algorithm="dana", num_workers=num_workers, cpus_per_actor=0.5, server_cpus=0.5)
    server = RemoteParameterServer.options(num_cpus=0.5).remote(config, "bench", actors, stub_worker_class(dim))
    ray.get(server.start.remote())
    ray.get(server.run_steps.remote(20))  # warm-up
    started = time.perf_counter()
    ray.get(server.run_steps.remote(updates))
    elapsed = time.perf_counter() - started
    ray.kill(server)
    return updates / elapsed


@ray.remote
class DriverPS:
    """Ray's example's server: weights as torch tensors, gradients as lists of numpy arrays, summed."""

    def __init__(self, dim: int, lr: float) -> None:
        self.weights = {"w": torch.zeros(dim)}
        self.lr = lr

    def apply_gradients(self, *gradients):
        summed = [np.stack(layer).sum(0) for layer in zip(*gradients)]
        self.weights["w"] -= self.lr * torch.from_numpy(summed[0])
        return self.weights

    def get_weights(self):
        return self.weights


@ray.remote
class DriverWorker:
    def __init__(self, dim: int, index: int) -> None:
        self.grad = np.random.default_rng(index).standard_normal(dim).astype(np.float32) * 1e-3

    def compute_gradients(self, weights):
        return [self.grad]


def driver_mediated(dim: int, workers: int, updates: int) -> float:
    ps = DriverPS.options(num_cpus=0.5).remote(dim, 0.1)
    pool = [DriverWorker.options(num_cpus=0.5).remote(dim, i) for i in range(workers)]
    weights = ps.get_weights.remote()
    pending = {w.compute_gradients.remote(weights): w for w in pool}

    def loop(n):
        nonlocal weights
        for _ in range(n):
            ready, _ = ray.wait(list(pending))
            worker = pending.pop(ready[0])
            weights = ps.apply_gradients.remote(ready[0])
            pending[worker.compute_gradients.remote(weights)] = worker

    loop(20)
    ray.get(weights)
    started = time.perf_counter()
    loop(updates)
    ray.get(weights)
    elapsed = time.perf_counter() - started
    for actor in (ps, *pool):
        ray.kill(actor)
    return updates / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=400)
    parser.add_argument("--dim", type=int, default=1_000_000)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        trial_ratios()
        print(f"\n2. Server updates/s at d = {args.dim:,} ({args.updates} updates after 20 of warm-up)")
        baseline = driver_mediated(args.dim, 2, args.updates)
        print(f"   driver-mediated ray.wait loop, 2 workers:     {baseline:8.1f} updates/s   1.00x")
        for workers in (2, 8):
            ups = ours(args.dim, workers, 2, args.updates)
            print(f"   ParameterServer, DANA N={workers}, 2 stub actors: {ups:8.1f} updates/s   {ups / baseline:.2f}x")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
