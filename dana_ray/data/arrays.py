"""``arrays``: examples from ``data_dir/data.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``, and the class
count); ``array_dataset`` builds the same from arrays held in memory (a plug-in's data). Bad arrays are
refused in one line naming the array (``check_arrays_content``), and the class count is declared, never taken
from the largest label.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dana_ray.data.memory import TensorImages
from dana_ray.data.sets import DataSet, DataShape

ARRAYS_FILE = "data.npz"


def array_dataset(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    num_classes: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    crop_padding: int = 0,
    flip: bool = False,
) -> DataSet:
    """A data set held in memory from arrays: images (uint8 NCHW, scaled to [0, 1]) or float examples
    ([N, F] features, or NCHW), and integer labels in [0, ``num_classes``). Normalised per channel (or
    feature) with ``mean``/``std``, by default the training split's own; ``crop_padding``/``flip`` augment
    images like CIFAR's. The arrays are checked first (``check_arrays_content``): the class count is the
    one declared, never the largest label."""
    x_train, x_test = np.asarray(x_train), np.asarray(x_test)
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    check_arrays_content(x_train, y_train, x_test, y_test, num_classes)
    x_train, x_test = torch.as_tensor(x_train), torch.as_tensor(x_test)
    y_train, y_test = torch.as_tensor(y_train).long(), torch.as_tensor(y_test).long()
    if x_train.dtype != torch.uint8:
        x_train, x_test = x_train.float(), x_test.float()
    scale = 255.0 if x_train.dtype == torch.uint8 else 1.0
    dims = [0] + list(range(2, x_train.dim()))
    if mean is None:
        mean = (x_train.float() / scale).mean(dims).tolist()
    if std is None:
        std = [max(s, 1e-8) for s in (x_train.float() / scale).std(dims).tolist()]
    make = lambda x, y, aug: TensorImages(x, y, mean, std, crop_padding=crop_padding * aug, flip=flip and aug)
    return DataSet(
        make(x_train, y_train, True),
        make(x_test, y_test, False),
        num_classes=num_classes,
        in_channels=int(x_train.shape[1]),
    )


def check_arrays_content(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, num_classes: Any
) -> None:
    """Raise a ValueError naming the array and the problem unless: ``num_classes`` is an integer >= 1; the
    examples are uint8 or floating point, all finite, with one shape per example shared by both splits (at
    least [N, F]); the labels are integers, one per example, each in [0, num_classes); no split is empty."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes: expected an integer >= 1, got {num_classes!r}")
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim < 2 or len(x) == 0:
            raise ValueError(
                f"x_{split}: expected at least one example of shape [F] or [C, H, W], got an array of shape {x.shape}"
            )
        if not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
            raise ValueError(f"x_{split}: expected uint8 images or floating-point examples, got {x.dtype}")
        if np.issubdtype(x.dtype, np.floating):
            bad = int(x.size - np.count_nonzero(np.isfinite(x)))
            if bad:
                raise ValueError(f"x_{split}: {bad} of its values are not finite (NaN or inf)")
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"y_{split}: expected one label per example ({len(x)}), got an array of shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"y_{split}: expected integer labels, got {y.dtype}")
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= num_classes:
            label = low if low < 0 else high
            raise ValueError(
                f"y_{split}: label {label} is outside [0, {num_classes}) (num_classes {num_classes}); "
                f"declare the class count the labels need"
            )
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"x_test: examples of shape {x_test.shape[1:]} where x_train's are {x_train.shape[1:]}")


def load_arrays(data_dir: str, crop_padding: int = 0, flip: bool = False, num_classes: int | None = None) -> DataSet:
    x_train, y_train, x_test, y_test, classes = _read_arrays(data_dir, num_classes)
    return array_dataset(x_train, y_train, x_test, y_test, classes, crop_padding=crop_padding, flip=flip)


def check_arrays(data_dir: str, num_classes: int | None = None) -> DataShape:
    """The file exists and holds the four arrays, the class count is declared, and the arrays pass
    ``check_arrays_content``; every error names the file and this host. Returns the arrays' shape."""
    path = os.path.join(os.path.expanduser(data_dir or ""), ARRAYS_FILE)
    arrays = _read_arrays(data_dir, num_classes)
    try:
        check_arrays_content(*arrays)
    except ValueError as error:
        raise ValueError(f"data_dir: arrays file {path!r}: {error} (on host {socket.gethostname()})") from None
    x_train, _, x_test, _, classes = arrays
    return DataShape(len(x_train), len(x_test), int(classes), tuple(int(d) for d in x_train.shape[1:]))


def _read_arrays(data_dir: str, num_classes: int | None) -> tuple:
    """(x_train, y_train, x_test, y_test, num_classes) from ``data_dir/data.npz``; the class count is
    ``num_classes`` (the option) or the file's ``num_classes`` entry, and they must agree where both are."""
    path = os.path.join(os.path.expanduser(data_dir or ""), ARRAYS_FILE)
    host = socket.gethostname()
    if not data_dir or not os.path.isfile(path):
        raise ValueError(
            f"data_dir: arrays needs the file {path!r}, which does not exist "
            f"(on host {host}); data sets are never downloaded"
        )
    names = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path) as arrays:
            read = {k: arrays[k] for k in arrays.files if k in (*names, "num_classes")}
    except Exception as error:  # any unreadable file is the same problem for the user
        raise ValueError(
            f"data_dir: arrays file {path!r} is unreadable ({type(error).__name__}) (on host {host})"
        ) from None
    missing = sorted(k for k in names if k not in read)
    if missing:
        raise ValueError(f"data_dir: arrays file {path!r} lacks {', '.join(missing)} (on host {host})")
    values, stored = [read[k] for k in names], read.get("num_classes")
    if stored is not None:
        stored = int(stored) if stored.ndim == 0 and np.issubdtype(stored.dtype, np.integer) else stored.tolist()
        if num_classes is not None and stored != num_classes:
            raise ValueError(
                f"dataset_options.num_classes: {num_classes} differs from the num_classes {stored!r} stored in {path!r}"
            )
    classes = num_classes if num_classes is not None else stored
    if classes is None:
        raise ValueError(
            f"data_dir: arrays file {path!r} declares no class count: store num_classes in it, or "
            f"set dataset_options: {{num_classes: K}} (the largest label is not a declaration)"
        )
    return (*values, classes)
