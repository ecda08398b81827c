"""Does each trial fit its data? What a data set's metadata decides, checked before anything launches.

A data set's shape (``data.DataShape``: examples per split, classes, one example's shape) comes from the
driver for data built there (``data.check_generated``: the embedded digits, a plug-in's generated data) and
from each node's file check for data read from files (``preflight.check_nodes``). Against it every trial's
batch size must fit the training set, and its model must take the examples (``models.check_model_input``:
the model's minimum image side, then a forward pass on the meta device). Each failure is one line naming
the field, so a sweep refuses it with exit 2 instead of a trial failing inside its actors.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from dana_ray.config import TrialConfig
from dana_ray.core.plugins import load_plugins
from dana_ray.data import DATASETS, DataShape, check_generated
from dana_ray.models import check_model_input

DataKey = tuple  # (dataset, data_dir, options as sorted JSON, plug-ins)


def data_key(dataset: str, data_dir: str | None, options: dict, plugins: tuple | list = ()) -> DataKey:
    """What one data check covers: the data set, its directory, its options, and the plug-ins that register it."""
    return dataset, data_dir, json.dumps(options, sort_keys=True), tuple(plugins)


def key_of(config: TrialConfig) -> DataKey:
    return data_key(config.dataset, config.data_dir, config.dataset_options, config.plugins)


def has_files(key: DataKey) -> bool:
    """Whether the data set of ``key`` is read from files its nodes must check (its plug-ins loaded here
    first, as the grid's validation did); else it is built in the driver."""
    load_plugins(list(key[3]))
    return DATASETS[key[0]].check is not None


def generated_shapes(configs: Iterable[TrialConfig]) -> dict[DataKey, DataShape]:
    """``data.check_generated`` once per distinct data set among ``configs`` that has no files to check."""
    shapes = {}
    for key in {key_of(c) for c in configs}:
        if not has_files(key):
            dataset, data_dir, options, _ = key
            shapes[key] = check_generated(dataset, data_dir, json.loads(options))
    return shapes


def check_fits(configs: Iterable[TrialConfig], shapes: dict[DataKey, DataShape]) -> None:
    """Raise a ValueError in one line for the first trial whose batch size or model does not fit its data's
    shape; trials whose data has no known shape are passed over."""
    for config in configs:
        shape = shapes.get(key_of(config))
        if shape is None:
            continue
        if config.batch_size > shape.train:
            raise ValueError(
                f"batch_size: {config.batch_size} is larger than the {config.dataset} training set "
                f"({shape.train} examples)"
            )
        check_model_input(
            config.model, config.model_options, shape.num_classes, shape.example, config.batch_size, config.dataset
        )
