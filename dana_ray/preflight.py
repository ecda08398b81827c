"""Checks a sweep runs on the Ray cluster before it launches anything: can every node read the data?

On a cluster the driver (the head node) may not see the data the GPU nodes read, so the check runs where
the data is read: one zero-CPU task pinned to each live node runs the data set's own check there
(``data.check_dataset``: the folders exist, and the files are what the loader expects: CIFAR's pickles
unpickle into 3x32x32 rows, an image folder's train/ and val/ hold the same classes with images in them).
Nodes that the autoscaler adds later are checked when their Worker actors load the data (a trial then
fails at start with the same message, naming that node). A data set with no files to check (the embedded
digits, a plug-in's generated data) costs no task at all: on a laptop the check would start a process and
import torch for nothing.
"""

from __future__ import annotations

import json

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from dana_ray.data import DATASETS, check_dataset
from dana_ray.plugins import load_plugins


def _check_here(plugins: list[str], dataset: str, data_dir: str | None, options: str) -> str | None:
    try:
        load_plugins(plugins)
        check_dataset(dataset, data_dir, **json.loads(options))
    except Exception as error:  # noqa: BLE001 - a plug-in's check may raise anything: one line, not a traceback
        return str(error) if isinstance(error, ValueError) else f"{dataset}: {type(error).__name__}: {error}"
    return None


_remote_check = ray.remote(num_cpus=0, max_retries=0)(_check_here)


def data_key(dataset: str, data_dir: str | None, options: dict, plugins: tuple | list = ()) -> tuple:
    """What one check covers: the data set, its directory, its options, and the plug-ins that register it."""
    return dataset, data_dir, json.dumps(options, sort_keys=True), tuple(plugins)


def missing_data(datasets: set[tuple]) -> list[str]:
    """One message per (node, data set) whose data cannot be read on that live node; [] if none.

    ``datasets``: the ``data_key``s of the sweep's trials.
    """
    datasets = {key for key in datasets if _has_check(key)}
    nodes = [n for n in ray.nodes() if n["Alive"]] if datasets else []
    checks = []
    for node in nodes:
        strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        for dataset, data_dir, options, plugins in sorted(datasets, key=str):
            ref = _remote_check.options(scheduling_strategy=strategy).remote(list(plugins), dataset, data_dir, options)
            checks.append((node["NodeManagerAddress"], ref))
    return [f"{message} [node {address}]" for address, ref in checks if (message := ray.get(ref))]


def _has_check(key: tuple) -> bool:
    """Whether the data set of ``key`` (a ``data_key``) declares a check of its files (its plug-ins loaded
    here first, as the grid's validation did)."""
    dataset, _, _, plugins = key
    load_plugins(list(plugins))
    return DATASETS[dataset].check is not None
