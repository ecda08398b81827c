"""``cifar10``, ``cifar100``: the files torchvision's CIFAR datasets download (``data_dir/cifar-10-batches-py/``
or ``data_dir/cifar-100-python/``: pickled batches of 3x32x32 uint8 rows with their labels, and a meta file
with the class names), read directly, never downloaded here.

One reader serves both the check a sweep runs on every node before it launches (every file unpickles into
rows of 3x32x32 bytes with labels in range) and the loader: torchvision's ``CIFAR10``/``CIFAR100`` classes
read the same files, but first hash them (MD5, about 0.25 s per 186 MB in every actor that loads them) and
offer no public way to skip that, while the check has already read each file's structure.

Standard augmentation: random crop with 4 pixels of zero padding, horizontal flip, per-channel
normalisation; the images are held in memory as uint8 and augmented in batches with a seeded generator.
"""

from __future__ import annotations

import os
import pickle
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dana_ray.core.cli import one_line
from dana_ray.data.memory import TensorImages
from dana_ray.data.sets import DataSet, DataShape, check_folders


@dataclass(frozen=True)
class _Layout:
    folder: str  # under data_dir
    train: list[str]  # the training batches, in order
    test: str
    label_key: str  # in each batch's dict
    meta: str  # the file of class names
    classes_key: str  # in the meta file's dict
    mean: tuple[float, ...]
    std: tuple[float, ...]


#: torchvision's on-disk layout of each data set, and its per-channel statistics.
LAYOUTS = {
    "cifar10": _Layout(
        "cifar-10-batches-py",
        [f"data_batch_{k}" for k in range(1, 6)],
        "test_batch",
        "labels",
        "batches.meta",
        "label_names",
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
    ),
    "cifar100": _Layout(
        "cifar-100-python",
        ["train"],
        "test",
        "fine_labels",
        "meta",
        "fine_label_names",
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
    ),
}


def _read(name: str, data_dir: str, file: str, read: Callable[[dict], Any]) -> Any:
    """``read`` of the unpickled ``file`` of data set ``name``; an unreadable file is one line naming it."""
    path = os.path.join(os.path.expanduser(data_dir), LAYOUTS[name].folder, file)
    if not os.path.isfile(path):
        raise ValueError(
            f"data_dir: {name} file {path!r} is missing; expected torchvision's layout "
            f"{os.path.dirname(path)}/ (on host {socket.gethostname()})"
        )
    try:
        with open(path, "rb") as f:
            return read(pickle.load(f, encoding="latin1"))
    except Exception as error:  # any unreadable file is the same problem for the user
        raise ValueError(
            f"data_dir: {name} file {path!r} is unreadable ({type(error).__name__}: "
            f"{one_line(error)}) (on host {socket.gethostname()})"
        ) from None


def _rows(name: str, data_dir: str, file: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The file's images, uint8 [n, 3, 32, 32], and labels, int64 [n], checked: rows of 3x32x32 bytes, one
    label each, in [0, ``classes``)."""
    layout = LAYOUTS[name]

    def rows(entry: dict) -> tuple[np.ndarray, np.ndarray] | None:
        data, labels = np.asarray(entry["data"]), np.asarray(entry[layout.label_key])
        ok = (
            data.ndim == 2
            and data.shape[1] == 3 * 32 * 32
            and data.dtype == np.uint8
            and labels.shape == (len(data),)
            and (len(labels) == 0 or 0 <= labels.min() <= labels.max() < classes)
        )
        return (data.reshape(-1, 3, 32, 32), labels.astype(np.int64)) if ok else None

    read = _read(name, data_dir, file, rows)
    if read is None:
        raise ValueError(
            f"data_dir: {name} file {os.path.join(os.path.expanduser(data_dir), layout.folder, file)!r} "
            f"does not hold rows of 3x32x32 bytes with labels in [0, {classes}) "
            f"(on host {socket.gethostname()})"
        )
    return read


def _class_count(name: str, data_dir: str) -> int:
    check_folders(name, data_dir, (LAYOUTS[name].folder,))
    return len(_read(name, data_dir, LAYOUTS[name].meta, lambda entry: list(entry[LAYOUTS[name].classes_key])))


def check_cifar(name: str, data_dir: str) -> DataShape:
    """Every file of the layout is there and reads as the loader reads it; returns the splits' sizes and the
    class count."""
    layout, classes = LAYOUTS[name], _class_count(name, data_dir)
    train = sum(len(_rows(name, data_dir, file, classes)[1]) for file in layout.train)
    return DataShape(train, len(_rows(name, data_dir, layout.test, classes)[1]), classes, (3, 32, 32))


def load_cifar(name: str, data_dir: str) -> DataSet:
    layout, classes = LAYOUTS[name], _class_count(name, data_dir)
    parts = [_rows(name, data_dir, file, classes) for file in layout.train]
    train_x, train_y = np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])
    test_x, test_y = _rows(name, data_dir, layout.test, classes)
    train = TensorImages(
        torch.from_numpy(np.ascontiguousarray(train_x)),
        torch.from_numpy(train_y),
        layout.mean,
        layout.std,
        crop_padding=4,
        flip=True,
    )
    test = TensorImages(
        torch.from_numpy(np.ascontiguousarray(test_x)), torch.from_numpy(test_y), layout.mean, layout.std
    )
    return DataSet(train, test, num_classes=classes, in_channels=3)
