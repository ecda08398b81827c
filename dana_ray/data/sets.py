"""What a data set is to the engine, and the registry of data sets by name.

A data set (``DataSet``) is two splits and their class and channel counts; a split (``ImageSet``) gives
batches by index, augmented when given a generator. A data set of one's own is one function, registered with
its options::

    @register_dataset("my-data", options={"size": Option(1000, integer(1))}, needs_data_dir=False)
    def my_data(data_dir, size=1000) -> DataSet:
        return array_dataset(x_train, y_train, x_test, y_test, num_classes=10)

Data sets read from files also register a ``check`` of their files, which a sweep runs on every node before
it launches anything (``cluster/preflight.py``); one with no files (the embedded digits, a plug-in's
generated data) is built in the driver instead (``check_generated``). Nothing is ever downloaded.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from dana_ray.core.cli import one_line
from dana_ray.core.registry import Option, Registry, resolve_options


class ImageSet(Protocol):
    """What the engine needs of a data set split: its size and batches by index."""

    def __len__(self) -> int: ...

    def batch(self, indices: np.ndarray, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Inputs (float32, normalised) and int64 labels; augmented iff ``generator`` is given."""
        ...


@dataclass(frozen=True)
class DataSet:
    train: ImageSet
    test: ImageSet
    num_classes: int
    in_channels: int


@dataclass(frozen=True)
class DataShape:
    """What a data set's metadata decides, known without loading it: examples per split, the class count,
    and one example's shape as the model sees it ([C, H, W] images, [F] features). A data set's file check
    returns it (read where the data is), so a sweep checks batch sizes and models against the data before
    anything launches."""

    train: int
    test: int
    num_classes: int
    example: tuple[int, ...]

    @classmethod
    def of(cls, data: DataSet) -> DataShape:
        """Of a loaded data set (one test example is read for its shape)."""
        x, _ = data.test.batch(np.arange(1), None)
        return cls(len(data.train), len(data.test), data.num_classes, tuple(int(d) for d in x.shape[1:]))


@dataclass(frozen=True)
class DatasetSpec:
    fn: Callable[..., DataSet]  # fn(data_dir, **options) -> DataSet
    options: dict[str, Option] = field(default_factory=dict)
    needs_data_dir: bool = False
    #: check(data_dir, **options) -> DataShape: raise a ValueError (naming the host and path) if the data
    #: under ``data_dir`` cannot be read, else return what its metadata says (None: it says nothing); run on
    #: every node before a sweep launches. None: no files to check (the data set is built in the driver).
    check: Callable[..., DataShape | None] | None = None


#: Every data set by the exact name configs use.
DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(
    name: str,
    options: dict[str, Option] | None = None,
    needs_data_dir: bool = False,
    check: Callable[..., DataShape | None] | None = None,
) -> Callable:
    """Decorator: register ``fn(data_dir, **options) -> DataSet`` as data set ``name``; ``check(data_dir,
    **options)`` verifies the files before anything launches."""

    def register(fn: Callable[..., DataSet]) -> Callable[..., DataSet]:
        DATASETS.register(name, DatasetSpec(fn, dict(options or {}), needs_data_dir, check))
        return fn

    return register


def load_dataset(name: str, data_dir: str | None = None, **options) -> DataSet:
    """Load the data set registered as ``name`` (from ``data_dir`` where it needs one)."""
    spec = DATASETS[name]
    values = resolve_options("dataset_options", name, options, spec.options)
    if "threads" in values and values["threads"] is None:
        values["threads"] = 1
    return spec.fn(data_dir, **values)


def check_generated(name: str, data_dir: str | None, options: dict) -> DataShape:
    """For a data set with no files to check on the nodes (``check`` None: the embedded digits, a plug-in's
    generated data): build it here, in one line naming the data set if that fails (``array_dataset`` checks
    its arrays) or a split is empty, and return its shape. Cheap for such data, and it spares starting Ray
    and actors to learn the same."""
    try:
        data = load_dataset(name, data_dir, **options)
    except Exception as error:  # a plug-in's builder may raise anything
        raise ValueError(f"dataset {name!r} cannot be built: {one_line(error)}") from None
    for split in ("train", "test"):
        if len(getattr(data, split)) == 0:
            raise ValueError(f"dataset {name!r}: its {split} split holds no examples")
    return DataShape.of(data)


def check_dataset(name: str, data_dir: str | None, **options) -> DataShape | None:
    """The data set's own check of its files under ``data_dir`` (on the node that runs this), and what their
    metadata says."""
    spec = DATASETS[name]
    if spec.check is not None:
        return spec.check(data_dir, **resolve_options("dataset_options", name, options, spec.options))
    return None


def check_folders(name: str, data_dir: str | None, folders: Sequence[str]) -> None:
    """Raise a ValueError naming this host and the path if ``data_dir`` (``~`` expanded here, on the node that
    reads it) lacks one of ``folders``; data sets are never downloaded."""
    for sub in folders:
        path = os.path.join(os.path.expanduser(data_dir or ""), sub)
        if not data_dir or not os.path.isdir(path):
            raise ValueError(
                f"data_dir: {name} needs the directory {path!r}, which does not exist "
                f"(on host {socket.gethostname()}); data sets are never downloaded"
            )
