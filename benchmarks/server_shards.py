"""Sharded server benchmark (``server_shards``); every figure is a ratio or a count measured in this one run.

For d = 0.27M (ResNet-20), 4M and 25.6M (ResNet-50) parameters: the server's updates/s (DANA, N = 8 logical
workers on 2 stub gradient actors that answer every job at once with a precomputed gradient, one job a
call) with one ParameterServer (K = 1) and with a sequencer and K = 2 shard actors, beside the same-run echo
ceiling of one server process (``benchmarks/ray_executor.py``: 8 calls in flight, each a fresh d-float
array out and back); and the bytes that passed through the server process (K = 1) or the sequencer (K = 2)
per update, by value (``Traffic.bytes_through_server``), and the CPU time the whole machine spent busy per
update (``/proc/stat``: every process, Ray's own included), and from them the cores K = 1 keeps busy and
cores / those, the "bound": the most any K can gain on this machine where a split update costs it as much
CPU as a whole one (a sharded server does the same copies and arithmetic, split, plus the sequencer's
calls; compare the CPU columns to see whether it did). Each row is the median of ``--repeats`` runs.

``--nodes 2`` (or ``--nodes 1 2``, a table each): the same across two Ray nodes on this machine
(``ray.cluster_utils.Cluster``, 1 CPU and a 1.5 GiB object store each): the server, or the sequencer and its
shards, spread by Ray over both nodes with the stub actors; the echo ceiling pulls its results ahead as
the server does.

    python benchmarks/server_shards.py [--dims 270000 4000000 25600000] [--shards 1 2] [--updates 30]
                                       [--repeats 3] [--nodes 1 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import ray

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from ray_executor import echo_ceiling, stub_worker_class, two_node_cluster

from benchmarks.tables import Record, Table, add_json_option
from dana_ray.engine.ray.server import RemoteParameterServer
from dana_ray.engine.ray.shards import RemoteShardedParameterServer

WORKERS, ACTORS = 8, 2


def busy_cpu_s() -> float:
    """CPU seconds this machine has spent busy (all processes: Ray's, the actors', the driver's), from
    ``/proc/stat``; NaN where there is none."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, *rest = (int(v) for v in f.readline().split()[1:])
    except (OSError, ValueError):
        return float("nan")
    return (user + nice + system + sum(rest[:3])) / os.sysconf("SC_CLK_TCK")


def server_rate(dim: int, shards: int, updates: int, server_cpus: float) -> tuple[float, float, float]:
    """(updates/s, bytes through the server or sequencer per update, the machine's busy CPU ms per update)
    after 10 updates of warm-up."""
    config = dict(
        algorithm="dana",
        num_workers=WORKERS,
        compute={"cpus_per_actor": 0.25},
        ray={"server_cpus": server_cpus, "jobs_per_call": 1, "server_shards": shards},
    )
    remote = RemoteShardedParameterServer if shards > 1 else RemoteParameterServer
    server = remote.options(num_cpus=server_cpus).remote(config, f"bench-{shards}", ACTORS, stub_worker_class(dim))
    try:
        ray.get(server.start.remote())
        ray.get(server.run_steps.remote(10))
        before = ray.get(
            server.__ray_call__.remote(lambda s: (s.master.take_metrics(), s.traffic.bytes_through_server)[1])
        )
        started, busy = time.perf_counter(), busy_cpu_s()
        ray.get(server.run_steps.remote(updates))
        elapsed, busy = time.perf_counter() - started, busy_cpu_s() - busy
        # the sequencer's partial sums of squares come in when the epoch's metrics are taken
        after = ray.get(
            server.__ray_call__.remote(lambda s: (s.master.take_metrics(), s.traffic.bytes_through_server)[1])
        )
    finally:
        ray.get(server.close.remote())
        ray.kill(server)
    return updates / elapsed, (after - before) / updates, 1e3 * busy / updates


def columns(shards: list[int]) -> list[tuple[str, str]]:
    """The table's columns for K = 1 and the other ``shards``."""
    ks = [k for k in shards if k != 1]
    return [
        ("d", ",d"), ("echo/s", ".1f"), ("K=1 /s", ".1f"),
        *[c for k in ks for c in ((f"K={k} /s", ".1f"), (f"K={k}/K=1", ".2f"))],
        ("K=1/echo", ".2f"), *[(f"K={k}/echo", ".2f") for k in ks],
        ("B/update K=1", ",.0f"), *[(f"B/update K={k}", ",.0f") for k in ks],
        ("CPU ms/update K=1", ".1f"), *[(f"CPU ms/update K={k}", ".1f") for k in ks],
        ("busy cores K=1", ".2f"), ("bound", ".2f"),
    ]  # fmt: skip


def measure(
    table: Table,
    dims: list[int],
    shards: list[int],
    updates: int,
    repeats: int,
    server_cpus: float,
    caller_cpus: float,
    pull_ahead: bool = False,
    nodes: int = 1,
) -> None:
    """A row of ``table`` per d: the median of ``repeats`` measurements, the kinds interleaved (this machine is
    noisy). The bound holds on one node only: across nodes K shards also halve the bytes that cross between
    them (a gradient actor finds its own node's slices local), so K > 1 can cost less CPU per update than
    K = 1 (the bound is then nan)."""
    ks = [k for k in shards if k != 1]
    for dim in dims:
        runs: dict = {"echo": [], **{k: [] for k in [1, *ks]}}
        for _ in range(repeats):
            runs["echo"].append(echo_ceiling(dim, WORKERS, updates, caller_cpus, pull_ahead=pull_ahead))
            for k in [1, *ks]:
                runs[k].append(server_rate(dim, k, updates, server_cpus))
        ceiling = float(np.median(runs["echo"]))
        rate = {k: float(np.median([r for r, _, _ in runs[k]])) for k in [1, *ks]}
        through = {k: runs[k][0][1] for k in [1, *ks]}
        cpu = {k: float(np.median([c for _, _, c in runs[k]])) for k in [1, *ks]}
        # the cores K = 1 keeps busy; where sharding splits the same CPU work (and adds calls), no K can beat
        # K = 1 by more than cores / busy on this machine (the "bound" column)
        busy = rate[1] * cpu[1] / 1e3
        cores = os.cpu_count() or 1
        table.add(
            dim, ceiling, rate[1],
            *[v for k in ks for v in (rate[k], rate[k] / rate[1])],
            rate[1] / ceiling, *[rate[k] / ceiling for k in ks],
            through[1], *[through[k] for k in ks],
            cpu[1], *[cpu[k] for k in ks],
            busy, cores / busy if nodes == 1 else float("nan"),
        )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[270_000, 4_000_000, 25_600_000])
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--nodes", type=int, nargs="+", choices=[1, 2], default=[1], help="a table for each")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per row (the median is printed)")
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2], help="the K to measure (K = 1 always)")
    add_json_option(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    record = Record("server_shards")
    record.note(
        f"DANA N = {WORKERS} on {ACTORS} stub actors; {args.updates} updates after 10 of warm-up, median of "
        f"{args.repeats}; the server, the sequencer, each shard and the echo caller reserve 0.25 CPU"
    )
    for nodes in args.nodes:
        if nodes == 1:
            one_node(record, args)
        else:
            two_nodes(record, args)
    record.save(args.json, argv)
    return 0


def one_node(record: Record, args: argparse.Namespace) -> None:
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        table = record.table(f"one node, {os.cpu_count()} cores", columns(args.shards))
        measure(table, args.dims, args.shards, args.updates, args.repeats, server_cpus=0.25, caller_cpus=0.25)
    finally:
        ray.shutdown()


def two_nodes(record: Record, args: argparse.Namespace) -> None:
    # cluster_utils gives each node a 150 MiB object store by default: ResNet-50's 100 MB points and
    # gradients would spill to disk, and the rows would time the spilling
    with two_node_cluster(object_store_memory=1536 * 1024**2):
        table = record.table(
            "across two 1-CPU Ray nodes on this machine (1.5 GiB object store each; Ray spreads the shards, "
            "the echo ceiling pulls its results ahead as the server does)",
            columns(args.shards),
        )
        measure(
            table,
            args.dims,
            args.shards,
            args.updates,
            args.repeats,
            server_cpus=0.25,
            caller_cpus=0.25,
            pull_ahead=True,
            nodes=2,
        )


if __name__ == "__main__":
    raise SystemExit(main())
