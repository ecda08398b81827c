"""``digits``, the embedded default: scikit-learn's copy of the UCI optical handwritten digits, 1,797 grey-scale
8x8 images in 10 classes, which ships inside the installed ``scikit-learn`` package (no download, no network).
Chosen because it is real image data with CIFAR-10's number of classes, small enough that a 16-worker run of
every algorithm trains on a laptop CPU in seconds, and large enough (1,437 training images) that staleness
visibly hurts. Split once, with a fixed seed, into 1,437 train / 360 test.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import torch

from dana_ray.data.memory import TensorImages
from dana_ray.data.sets import DataSet

_SPLIT_SEED = 20190101  # the digits train/test split, fixed for every trial


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (images uint8 [1797, 8, 8] with values 0..16, labels int64).

    Read straight from the file scikit-learn installs (``sklearn/datasets/data/digits.csv.gz``: 64 pixel
    columns, then the label), which skips importing scikit-learn (~2 s, paid again by every Ray actor); falls
    back to ``sklearn.datasets.load_digits`` if that file ever moves.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "dataset: 'digits' ships inside scikit-learn, which is not installed (pip install scikit-learn)"
        )
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    if os.path.isfile(path):
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        pixels, target = table[:, :-1], table[:, -1]
    else:  # pragma: no cover - depends on scikit-learn's layout
        from sklearn.datasets import load_digits as sklearn_digits

        bunch = sklearn_digits()
        pixels, target = bunch.data, bunch.target
    return pixels.reshape(-1, 8, 8).astype(np.uint8), target.astype(np.int64)


def load_digits() -> DataSet:
    pixels, target = digits_arrays()
    images = torch.from_numpy(pixels).unsqueeze(1)  # values 0..16
    labels = torch.from_numpy(target)
    order = torch.from_numpy(np.random.default_rng(_SPLIT_SEED).permutation(len(labels)))
    train, test = order[:1437], order[1437:]
    mean = float(images[train].float().mean() / 16)
    std = float(images[train].float().std() / 16)
    make = lambda idx: TensorImages(images[idx], labels[idx], (mean,), (std,), max_value=16.0)
    return DataSet(make(train), make(test), num_classes=10, in_channels=1)
