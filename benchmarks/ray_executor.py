"""Ray executor benchmarks; every figure is a ratio measured in this one run.

1. The same small trial (embedded digits, N = 8 DANA workers, round robin, one epoch) on the local executor
   and on the Ray executor with P = 1 and 2 actors: the time of the training epoch (steady state), and the
   whole run including starting the actors. Same cpu_threads everywhere, and the same params_sha256.
2. Server throughput at d = 0.27M (ResNet-20's size, 1 MB a point): our ParameterServer (DANA, N logical
   workers on 2 stub actors that answer every job with a precomputed gradient at once) against
   - the platform's ceiling, measured next to it with the same processes and CPUs: an actor in the server's
     place keeps as many calls in flight as our server keeps jobs (N), each sending a fresh d-float array
     (``ray.put``, as our server sends a point) to one of 2 echo actors that return it (a d-float result, as
     a gradient): the round trips/s the object store and the actor calls allow with no update at all;
   - the pattern of Ray's async parameter-server example, written from its description: the driver loops on
     ``ray.wait`` over the workers' gradient refs, sends the first ready one to a parameter-server actor
     (``apply_gradients``: sum, SGD step, return the weights as a torch state dict), and hands the new
     weights ref to that worker.
3. With ``--nodes 2`` (``--nodes 1 2``: all three parts), part 2 across two Ray nodes on this machine
   (``ray.cluster_utils.Cluster``: the server, or the echo caller, alone on a 1-CPU head; the 2 stub or echo
   actors on a second 1-CPU node), so every point and every gradient crosses between object stores. Ours
   against the same server taking its results one at a time in schedule order (``prefetch`` switched off,
   what the server did before), and the echo ceiling both ways: taking results in order, and with the
   server's pull-ahead; and the sending direction alone (the array out, a float back, results in order).

    python benchmarks/ray_executor.py [--updates 400] [--dim 270000] [--skip-trial] [--nodes 1 2] [--repeats 3]
                                      [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import numpy as np
import ray
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks.tables import Record, add_json_option
from dana_ray.engine.ray.server import ParameterServer, RemoteParameterServer
from dana_ray.engine.ray.transport import RayTransport
from dana_ray.trial import run

TRIAL = dict(algorithm="dana", num_workers=8, epochs=1, lr_decay_epochs=[], compute={"cpu_threads": 1})


def trial_ratios(record: Record) -> None:
    local = run(TRIAL)
    rows = [("local", local)]
    for actors in (1, 2):
        rows.append(
            (
                f"ray P={actors}",
                run(
                    dict(
                        TRIAL,
                        compute={"cpu_threads": 1, "cpus_per_actor": 0.5},
                        ray={"num_actors": actors, "server_cpus": 0.5},
                    ),
                    executor="ray",
                ),
            )
        )
    epoch = lambda r: r["history"][0]["gradients"] / r["history"][0]["gradients_per_s"]
    table = record.table(
        "1. One epoch of digits, DANA, N = 8 (cpu_threads = 1)",
        [("executor", "<10"), ("epoch s", ".3f"), ("run s", ".2f"), ("epoch/local", ".2f"), ("run/local", ".2f"),
         ("params_sha256", "<16")],
    )  # fmt: skip
    for label, r in rows:
        table.add(
            label,
            epoch(r),
            r["wall_time_s"],
            epoch(r) / epoch(local),
            r["wall_time_s"] / local["wall_time_s"],
            r["params_sha256"][:16],
        )


def stub_worker_class(dim: int):
    """A gradient actor that answers every job at once with a precomputed gradient of ``dim`` floats (cut into
    the shards' slices when the server is sharded: ``benchmarks/server_shards.py``)."""

    class StubWorker:
        def __init__(self, config: dict, index: int) -> None:
            self.grad = np.random.default_rng(index).standard_normal(dim).astype(np.float32) * 1e-3

        def ready(self) -> dict:
            return {"node_id": ray.get_runtime_context().get_node_id(), "host": "stub"}

        def describe(self, with_params: bool = True) -> dict:
            info = {
                "bn_stats": np.zeros(0, np.float32),
                "bn_momentum": 0.1,
                "num_classes": 10,
                "steps_per_epoch": 1,
                "num_params": dim,
            }
            return dict(info, params=np.zeros(dim, np.float32)) if with_params else info

        def initial_params(self) -> np.ndarray:
            return np.zeros(dim, np.float32)

        def compute(self, worker: int, batch: int, point: np.ndarray, lr: float = 0.0):
            return self.grad, np.zeros(0, np.float32), 0.0, 0.0

        def compute_many(
            self, workers: list, batches: list, *points: np.ndarray, shards: int = 1, lrs: list | None = None
        ) -> tuple:
            """As ``Worker.compute_many``: with a sharded server, the gradient cut where the point's slices are."""
            out: list = []
            for k in range(len(workers)):
                if shards == 1:
                    out.append((self.grad, np.zeros(0, np.float32), 0.0, 0.0))
                else:
                    cut = np.cumsum([len(p) for p in points[k * shards : (k + 1) * shards]])[:-1]
                    out += [*np.split(self.grad, cut), (np.zeros(0, np.float32), 0.0, 0.0)]
            return tuple(out)

        def evaluate(self, bn_stats, *params):
            return 0.0, 0.0

    return ray.remote(StubWorker)


class InOrderTransport(RayTransport):
    """Ray's transport without pulling ahead: each result is fetched when the schedule reaches it."""

    def prefetch(self, handles: list) -> list:
        return []


class InOrderServer(ParameterServer):
    """Our server taking its results in schedule order (what it did before it pulled them ahead)."""

    def _transport(self) -> RayTransport:
        return InOrderTransport(self.fleet, self.traffic, self.node)


def ours(
    dim: int,
    num_workers: int,
    actors: int,
    updates: int,
    server_cpus: float = 0.5,
    server_class: type = RemoteParameterServer,
) -> tuple[float, int]:
    """(updates/s, the results found already pulled to the server's node when it needed them)."""
    config = dict(
        algorithm="dana",
        num_workers=num_workers,
        compute={"cpus_per_actor": 0.5},
        ray={"server_cpus": server_cpus, "jobs_per_call": 1},
    )  # one job a call: the server's own cost, as the echo ceiling pays it
    server = server_class.options(num_cpus=server_cpus).remote(config, "bench", actors, stub_worker_class(dim))
    ray.get(server.start.remote())
    ray.get(server.run_steps.remote(20))  # warm-up
    started = time.perf_counter()
    ray.get(server.run_steps.remote(updates))
    elapsed = time.perf_counter() - started
    pulled_ahead = ray.get(server.__ray_call__.remote(lambda s: s.dispatcher.pulled_ahead))
    ray.kill(server)
    return updates / elapsed, pulled_ahead


@ray.remote
class Echo:
    def echo(self, array: np.ndarray) -> np.ndarray:
        return array

    def receive(self, array: np.ndarray) -> float:
        """Takes the array, returns a float: times the sending direction alone."""
        return float(array[0])


@ray.remote
class EchoCaller:
    """The server's place in the ceiling: ``in_flight`` calls at all times, round robin over the echo actors;
    with ``pull_ahead``, the results in flight are asked for together before each is taken, as our server
    does with results on other nodes."""

    def run(
        self,
        echoes: list,
        dim: int,
        in_flight: int,
        calls: int,
        pull_ahead: bool = False,
        method: str = "echo",
        warmup: int = 20,
    ) -> float:
        from collections import deque

        array = np.ones(dim, np.float32)
        pending = deque(getattr(echoes[k % len(echoes)], method).remote(ray.put(array)) for k in range(in_flight))
        local: set = set()
        started = 0.0
        for k in range(warmup + calls):
            if k == warmup:
                started = time.perf_counter()
            if pull_ahead and (asked := [ref for ref in pending if ref not in local]):
                local.update(ray.wait(asked, num_returns=len(asked), timeout=0, fetch_local=True)[0])
            local.discard(pending[0])
            ray.get(pending.popleft())
            pending.append(getattr(echoes[k % len(echoes)], method).remote(ray.put(array)))
        elapsed = time.perf_counter() - started
        ray.get(list(pending))
        return calls / elapsed


def echo_ceiling(
    dim: int, in_flight: int, calls: int, caller_cpus: float = 0.5, pull_ahead: bool = False, method: str = "echo"
) -> float:
    """Round trips/s; ``method="receive"``: the array goes out, a float comes back."""
    caller = EchoCaller.options(num_cpus=caller_cpus).remote()  # first: with 1 CPU it takes a 1-CPU node
    echoes = [Echo.options(num_cpus=0.5).remote() for _ in range(2)]
    rate = ray.get(caller.run.remote(echoes, dim, in_flight, calls, pull_ahead, method))
    for actor in (caller, *echoes):
        ray.kill(actor)
    return rate


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=400)
    parser.add_argument("--dim", type=int, default=270_000)
    parser.add_argument("--skip-trial", action="store_true", help="on one node, only the server throughput (part 2)")
    parser.add_argument(
        "--nodes",
        type=int,
        nargs="+",
        choices=[1, 2],
        default=[1],
        help="1: parts 1 and 2 on one Ray node; 2: the server throughput across two Ray nodes on this machine (part 3)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="part 3: measurements of each row (median)")
    add_json_option(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    record = Record("ray_executor")
    if 1 in args.nodes:
        one_node(record, args.dim, args.updates, args.skip_trial)
    if 2 in args.nodes:
        across_nodes(record, args.dim, args.updates, args.repeats)
    record.save(args.json, argv)
    return 0


def one_node(record: Record, dim: int, updates: int, skip_trial: bool) -> None:
    """Parts 1 and 2."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        if not skip_trial:
            trial_ratios(record)
        rows = []
        for workers in (2, 8):
            ceiling = echo_ceiling(dim, workers, updates)
            rows.append((f"echo ceiling, {workers} calls in flight, 2 echo actors", ceiling, ceiling))
            rows.append(
                (f"ParameterServer, DANA N={workers}, 2 stub actors", ours(dim, workers, 2, updates)[0], ceiling)
            )
        rows.append(
            ("Ray example's driver-mediated loop, 2 workers (of the 2-call ceiling)", driver_mediated(dim, 2, updates),
             rows[0][1])
        )  # fmt: skip
        table = record.table(
            f"2. Server updates/s at d = {dim:,} ({updates} updates after 20 of warm-up)",
            [("", "<70"), ("updates/s", ".1f"), ("of ceiling", ".2f")],
        )
        for label, rate, ceiling in rows:
            table.add(label, rate, rate / ceiling)
    finally:
        ray.shutdown()


@contextlib.contextmanager
def two_node_cluster(object_store_memory: int | None = None):
    """Two 1-CPU Ray nodes on this machine (``ray.cluster_utils.Cluster``), this driver connected to them;
    ``object_store_memory`` for each, else ``cluster_utils``' default (150 MiB)."""
    from ray.cluster_utils import Cluster

    store = {} if object_store_memory is None else {"object_store_memory": object_store_memory}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False, **store})
    try:
        cluster.add_node(num_cpus=1, **store)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        yield
    finally:
        ray.shutdown()
        cluster.shutdown()


def across_nodes(record: Record, dim: int, updates: int, repeats: int) -> None:
    """Part 3: a 1-CPU head and a 1-CPU second node; the server (1 CPU) and the stub actors (0.5 each) cannot
    share a node, so every point and gradient crosses between the two object stores. Each row is measured
    ``repeats`` times, the rows interleaved; recorded: the median, its ratio to the median pulled-ahead
    ceiling, the range, and for our server the results its non-blocking check found already on its node
    (``Dispatcher.pulled_ahead``, summed over the repeats: a pull it starts that finishes after the check is
    not counted; 0 for the in-order server, which starts none)."""
    with two_node_cluster():
        table = record.table(
            f"3. Across two nodes: updates/s at d = {dim:,} ({updates} updates after 20 of warm-up), median of "
            f"{repeats}; DANA N = calls in flight, 2 actors on the other node",
            [("N", "d"), ("", "<40"), ("updates/s", ".1f"), ("of ceiling", ".2f"), ("min", ".0f"), ("max", ".0f"),
             ("results pulled ahead", "<0")],
        )  # fmt: skip
        in_order = ray.remote(InOrderServer)
        for workers in (2, 8):
            rows = {
                "echo ceiling, results in order": lambda: (echo_ceiling(dim, workers, updates, 1.0), None),
                "echo ceiling, pulled ahead": lambda: (
                    echo_ceiling(dim, workers, updates, 1.0, pull_ahead=True),
                    None,
                ),
                "ParameterServer, results in order": lambda: ours(dim, workers, 2, updates, 1.0, in_order),
                "ParameterServer (pulls ahead)": lambda: ours(dim, workers, 2, updates, 1.0),
                "sending alone (a float back), in order": lambda: (
                    echo_ceiling(dim, workers, updates, 1.0, method="receive"),
                    None,
                ),
            }
            runs: dict[str, list] = {label: [] for label in rows}
            for _ in range(repeats):
                for label, measure in rows.items():
                    runs[label].append(measure())
            ceiling = float(np.median([rate for rate, _ in runs["echo ceiling, pulled ahead"]]))
            for label, results in runs.items():
                rates = [rate for rate, _ in results]
                median, pulled = float(np.median(rates)), [n for _, n in results]
                ahead = "-" if pulled[0] is None else str(sum(pulled))
                table.add(workers, label, median, median / ceiling, min(rates), max(rates), ahead)


if __name__ == "__main__":
    raise SystemExit(main())
