"""Checks a sweep runs on the Ray cluster before it launches anything: can every node read the data?

On a cluster the driver (the head node) may not see the data the GPU nodes read, so the check runs where
the data is read: one zero-CPU task pinned to each live node runs the data set's own check there
(``data.check_dataset``: the folders exist, and the files are what the loader expects: CIFAR's pickles
unpickle into 3x32x32 rows, an image folder's train/ and val/ hold the same classes with images in them),
and returns what the data's metadata says (``data.DataShape``), which must agree between nodes and against
which ``fits.check_fits`` checks every trial's batch size and model. Nodes that the autoscaler adds later
are checked when their Worker actors load the data (a trial then fails at start with the same message,
naming that node). A data set with no files to check (the embedded
digits, a plug-in's generated data) costs no task at all: on a laptop the check would start a process and
import torch for nothing.
"""

from __future__ import annotations

import json

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from dana_ray.core.plugins import load_plugins
from dana_ray.data import DataShape, check_dataset
from dana_ray.experiments.fits import DataKey, has_files


def _check_here(
    plugins: list[str], dataset: str, data_dir: str | None, options: str
) -> tuple[str | None, DataShape | None]:
    """(error, None) or (None, the data's shape, or None where its check says nothing)."""
    try:
        load_plugins(plugins)
        shape = check_dataset(dataset, data_dir, **json.loads(options))
    except Exception as error:
        return (str(error) if isinstance(error, ValueError) else f"{dataset}: {type(error).__name__}: {error}"), None
    return None, shape if isinstance(shape, DataShape) else None


_remote_check = ray.remote(num_cpus=0, max_retries=0)(_check_here)


def check_nodes(datasets: set[DataKey]) -> tuple[list[str], dict[DataKey, DataShape]]:
    """Each data set with files (``datasets``: ``fits.data_key``s) checked on every live node: one message per
    (node, data set) whose data cannot be read there, or whose shape differs from another node's (a cluster
    whose nodes hold different copies would train on different data), and the shape each data set has."""
    datasets = {key for key in datasets if has_files(key)}
    nodes = [n for n in ray.nodes() if n["Alive"]] if datasets else []
    checks = []
    for node in nodes:
        strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        for key in sorted(datasets, key=str):
            dataset, data_dir, options, plugins = key
            ref = _remote_check.options(scheduling_strategy=strategy).remote(list(plugins), dataset, data_dir, options)
            checks.append((node["NodeManagerAddress"], key, ref))
    problems: list[str] = []
    shapes: dict[DataKey, DataShape] = {}
    seen_on: dict[DataKey, str] = {}
    for address, key, ref in checks:
        message, shape = ray.get(ref)
        if message:
            problems.append(f"{message} [node {address}]")
        elif shape is not None:
            if key in shapes and shapes[key] != shape:
                problems.append(
                    f"data_dir: {key[0]} under {key[1]!r} differs between nodes: {seen_on[key]} has "
                    f"{_describe(shapes[key])}, {address} has {_describe(shape)}"
                )
            shapes.setdefault(key, shape)
            seen_on.setdefault(key, address)
    return problems, shapes


def _describe(shape: DataShape) -> str:
    return f"{shape.train}/{shape.test} train/test examples of {shape.num_classes} classes, shape {list(shape.example)}"
