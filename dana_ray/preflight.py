"""Checks a sweep runs on the Ray cluster before it launches anything: is the data on every node?

On a cluster the driver (the head node) may not see the data the GPU nodes read, so the check runs where
the data is read: one zero-CPU task pinned to each live node calls ``data.check_data_dir`` there. Nodes that
the autoscaler adds later are checked when their Worker actors load the data (a trial then fails at start
with the same message, naming that node).
"""

from __future__ import annotations

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from dana_ray.data import check_data_dir


def _check_here(dataset: str, data_dir: str | None) -> str | None:
    try:
        check_data_dir(dataset, data_dir)
    except ValueError as error:
        return str(error)
    return None


_remote_check = ray.remote(num_cpus=0, max_retries=0)(_check_here)


def missing_data(datasets: set[tuple[str, str | None]]) -> list[str]:
    """One message per (node, data set) whose data directory is missing on that live node; [] if none.

    ``datasets``: the (dataset, data_dir) pairs the sweep's trials read.
    """
    nodes = [n for n in ray.nodes() if n["Alive"]]
    checks = []
    for node in nodes:
        strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        for dataset, data_dir in sorted(datasets, key=str):
            ref = _remote_check.options(scheduling_strategy=strategy).remote(dataset, data_dir)
            checks.append((node["NodeManagerAddress"], ref))
    return [f"{message} [node {address}]" for address, ref in checks if (message := ray.get(ref))]
