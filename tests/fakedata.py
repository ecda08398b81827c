"""Tiny data sets in the real on-disk formats, for the real loaders (nothing can be downloaded here)."""

from __future__ import annotations

import os
import pickle

import numpy as np


def make_fake_cifar(root: str, name: str = "cifar10", n_train: int = 100, n_test: int = 40, seed: int = 0) -> str:
    """torchvision's CIFAR layout: pickled dicts of uint8 rows (3x32x32, channel-major) and labels.

    Each class gets a distinct mean colour, so a model can actually learn something.
    """
    rng = np.random.default_rng(seed)
    num_classes = 10 if name == "cifar10" else 100
    folder = os.path.join(root, "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    os.makedirs(folder, exist_ok=True)
    label_key = "labels" if name == "cifar10" else "fine_labels"

    def split(n):
        labels = rng.integers(0, num_classes, n)
        base = (labels[:, None] * 23 % 256).astype(np.float64)
        data = np.clip(base + rng.normal(0, 20, (n, 3 * 32 * 32)), 0, 255).astype(np.uint8)
        return {"data": data, label_key: labels.tolist()}

    if name == "cifar10":
        parts = np.array_split(np.arange(n_train), 5)
        whole = split(n_train)
        for k, rows in enumerate(parts, 1):
            batch = {"data": whole["data"][rows], label_key: [whole[label_key][r] for r in rows]}
            _dump(os.path.join(folder, f"data_batch_{k}"), batch)
        _dump(os.path.join(folder, "test_batch"), split(n_test))
        _dump(os.path.join(folder, "batches.meta"), {"label_names": [f"class{i}" for i in range(10)]})
    else:
        _dump(os.path.join(folder, "train"), split(n_train))
        _dump(os.path.join(folder, "test"), split(n_test))
        _dump(os.path.join(folder, "meta"), {"fine_label_names": [f"class{i}" for i in range(100)]})
    return root


def make_fake_imagefolder(
    root: str, classes: int = 3, per_class: int = 4, size: int = 20, seed: int = 0, val_per_class: int | None = None
) -> str:
    """An ImageNet-style tree: root/{train,val}/<class>/<image>.png."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in range(classes):
            folder = os.path.join(root, split, f"n{c:08d}")
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class if split == "train" or val_per_class is None else val_per_class):
                pixels = np.clip(rng.normal(c * 80, 30, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(os.path.join(folder, f"img{i}.png"))
    return root


def _dump(path: str, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def make_digits_imagefolder(root: str) -> str:
    """The embedded digits as an ImageFolder tree of 8x8 PNGs, root/{train,val}/<digit>/<k>.png (the same
    train/test split as the ``digits`` data set)."""
    from PIL import Image

    from dana_ray.data import load_digits

    data = load_digits()
    for split, part in (("train", data.train), ("val", data.test)):
        for k, (image, label) in enumerate(zip(part.images, part.labels)):
            folder = os.path.join(root, split, str(int(label)))
            os.makedirs(folder, exist_ok=True)
            Image.fromarray((image[0].numpy() * 15).astype(np.uint8)).save(os.path.join(folder, f"{k}.png"))
    return root


def make_arrays_npz(root: str, **changes) -> str:
    """The embedded digits as float arrays in ``root/data.npz`` (the ``arrays`` data set's layout, with its
    class count); ``changes`` replace or add entries (an entry set to None is left out)."""
    from dana_ray.data import load_digits

    data = load_digits()
    os.makedirs(root, exist_ok=True)
    arrays = dict(
        x_train=data.train.images.numpy() / 16.0,
        y_train=data.train.labels.numpy(),
        x_test=data.test.images.numpy() / 16.0,
        y_test=data.test.labels.numpy(),
        num_classes=10,
    )
    arrays.update(changes)
    np.savez(os.path.join(root, "data.npz"), **{k: v for k, v in arrays.items() if v is not None})
    return root
