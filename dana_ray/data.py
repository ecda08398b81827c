"""Data sets and each logical worker's seeded stream of batches.

* ``digits`` (the embedded default): scikit-learn's copy of the UCI optical handwritten digits, 1,797
  grey-scale 8x8 images in 10 classes, which ships inside the installed ``scikit-learn`` package (no
  download, no network). Chosen because it is real image data with CIFAR-10's number of classes, small enough
  that a 16-worker run of every algorithm trains on a laptop CPU in seconds, and large enough (1,437
  training images) that staleness visibly hurts. Split once, with a fixed seed, into 1,437 train / 360 test.
* ``cifar10``, ``cifar100``: torchvision's CIFAR loaders over ``data_dir`` (torchvision's on-disk format,
  ``cifar-10-batches-py/`` or ``cifar-100-python/``; never downloaded here). Standard augmentation: random
  crop with 4 pixels of zero padding, horizontal flip, per-channel normalisation. Held in memory as uint8 and
  augmented in batches with a seeded generator, which is both fast and exactly reproducible.
* ``imagenet``: torchvision ``ImageFolder`` over ``data_dir/train`` and ``data_dir/val`` (one folder per class,
  as ImageNet's ILSVRC-2012 tree is usually laid out); RandomResizedCrop + flip for training, resize +
  center crop for testing; option ``image_size`` (default 224).

A worker's stream: batch k of logical worker i is fixed by (seed, i, k) alone. The worker's passes over the
training set are seeded permutations keyed by (seed, i, pass), and batch k's augmentation draws from a
generator keyed by (seed, i, k). So a stream position is one integer, a batch can be recomputed anywhere
(any actor, after any restart), and runs are reproducible.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dana_ray.checks import check_name, check_options

_STREAM_TAG = 11
_AUGMENT_TAG = 12
_SPLIT_SEED = 20190101  # the digits train/test split, fixed for every trial


class ImageSet(Protocol):
    """What the engine needs of a data set split: its size and batches by index."""

    def __len__(self) -> int: ...

    def batch(self, indices: np.ndarray, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Images (float32, NCHW, normalised) and int64 labels; augmented iff ``generator`` is given."""
        ...


@dataclass(frozen=True)
class DataSet:
    train: ImageSet
    test: ImageSet
    num_classes: int
    in_channels: int


class TensorImages:
    """Images held in memory as uint8 NCHW, augmented per batch with a seeded generator."""

    def __init__(self, images: Tensor, labels: Tensor, mean: tuple[float, ...], std: tuple[float, ...],
                 max_value: float = 255.0, crop_padding: int = 0, flip: bool = False) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(labels):
            raise ValueError(f"images: expected uint8 NCHW with one label each, got {images.dtype} "
                             f"{tuple(images.shape)} and {len(labels)} labels")
        self.images, self.labels = images, labels.long()
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.max_value, self.crop_padding, self.flip = max_value, crop_padding, flip

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices: np.ndarray, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        x = self.images[index].float().div_(self.max_value)
        if generator is not None:
            x = self._augment(x, generator)
        return (x - self.mean) / self.std, self.labels[index]

    def _augment(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n, _, h, w = x.shape
        if self.crop_padding:
            p = self.crop_padding
            padded = F.pad(x, (p, p, p, p))
            top = torch.randint(0, 2 * p + 1, (n,), generator=generator)
            left = torch.randint(0, 2 * p + 1, (n,), generator=generator)
            rows = (top[:, None] + torch.arange(h))[:, None, :, None]   # n,1,h,1
            cols = (left[:, None] + torch.arange(w))[:, None, None, :]  # n,1,1,w
            x = padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols]
        if self.flip:
            flip = torch.rand(n, generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x


class FolderImages:
    """A torchvision ``ImageFolder``; per-sample transforms seeded from the batch's generator."""

    def __init__(self, root: str, transform: Callable) -> None:
        from torchvision.datasets import ImageFolder

        self.folder = ImageFolder(root)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.folder)

    def batch(self, indices: np.ndarray, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        images, labels = [], []
        seed = int(torch.randint(0, 2**62, (1,), generator=generator)) if generator is not None else 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # torchvision's random transforms draw from the global generator
            for i in indices:
                image, label = self.folder[int(i)]
                images.append(self.transform(image))
                labels.append(label)
        return torch.stack(images), torch.tensor(labels, dtype=torch.long)


# -- loaders ---------------------------------------------------------------------------------------------------

def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (images uint8 [1797, 8, 8] with values 0..16, labels int64).

    Read straight from the file scikit-learn installs (``sklearn/datasets/data/digits.csv.gz``: 64 pixel
    columns, then the label), which skips importing scikit-learn (~2 s, paid again by every Ray actor); falls
    back to ``sklearn.datasets.load_digits`` if that file ever moves.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise ValueError("dataset: 'digits' ships inside scikit-learn, which is not installed (pip install scikit-learn)")
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
    make = lambda idx: TensorImages(images[idx], labels[idx], (mean,), (std,), max_value=16.0)  # noqa: E731
    return DataSet(make(train), make(test), num_classes=10, in_channels=1)


_CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def load_cifar(name: str, data_dir: str) -> DataSet:
    from torchvision import datasets

    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]
    check_data_dir(name, data_dir)
    data_dir = os.path.expanduser(data_dir)
    try:
        splits = [cls(data_dir, train=train, download=False) for train in (True, False)]
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted"
        raise ValueError(f"data_dir: {name} under {data_dir!r} is incomplete or corrupted ({error}); expected "
                         f"torchvision's layout {os.path.join(data_dir, cls.base_folder)}/") from error
    mean, std = _CIFAR_STATS[name]
    train, test = (TensorImages(torch.from_numpy(s.data).permute(0, 3, 1, 2).contiguous(),
                                torch.tensor(s.targets), mean, std, crop_padding=4 * aug, flip=bool(aug))
                   for s, aug in zip(splits, (1, 0)))
    return DataSet(train, test, num_classes=len(splits[0].classes), in_channels=3)


def load_imagenet(data_dir: str, image_size: int = 224) -> DataSet:
    from torchvision import transforms as T

    check_data_dir("imagenet", data_dir)
    data_dir = os.path.expanduser(data_dir)
    normalize = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    train = FolderImages(os.path.join(data_dir, "train"), T.Compose([
        T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor(), normalize]))
    test = FolderImages(os.path.join(data_dir, "val"), T.Compose([
        T.Resize(round(image_size * 256 / 224)), T.CenterCrop(image_size), T.ToTensor(), normalize]))
    if train.folder.classes != test.folder.classes:
        raise ValueError(f"data_dir: {data_dir!r} has different class folders in train/ and val/")
    return DataSet(train, test, num_classes=len(train.folder.classes), in_channels=3)


#: The directories each data set reads under ``data_dir`` (torchvision's CIFAR layout; ImageFolder splits).
DATA_SUBDIRS = {"cifar10": ("cifar-10-batches-py",), "cifar100": ("cifar-100-python",), "imagenet": ("train", "val")}


def check_data_dir(name: str, data_dir: str | None) -> None:
    """Raise a ValueError naming this host and the path if ``data_dir`` (``~`` expanded here, on the node that
    reads it) lacks a directory data set ``name`` reads; data sets are never downloaded."""
    for sub in DATA_SUBDIRS.get(name, ()):
        path = os.path.join(os.path.expanduser(data_dir or ""), sub)
        if not data_dir or not os.path.isdir(path):
            raise ValueError(f"data_dir: {name} needs the directory {path!r}, which does not exist "
                             f"(on host {socket.gethostname()}); data sets are never downloaded")


#: name -> (loader(data_dir, **options), allowed options, needs data_dir)
DATASETS: dict[str, tuple[Callable[..., DataSet], tuple[str, ...], bool]] = {
    "digits": (lambda data_dir: load_digits(), (), False),
    "cifar10": (lambda data_dir: load_cifar("cifar10", data_dir), (), True),
    "cifar100": (lambda data_dir: load_cifar("cifar100", data_dir), (), True),
    "imagenet": (load_imagenet, ("image_size",), True),
}


def load_dataset(name: str, data_dir: str | None = None, **options) -> DataSet:
    """Load the data set registered as ``name`` (from ``data_dir`` where it needs one)."""
    check_name("dataset", name, DATASETS)
    loader, allowed, _ = DATASETS[name]
    check_options("dataset_options", name, options, allowed)
    return loader(data_dir, **options)


# -- each logical worker's stream of batches -------------------------------------------------------------------

class WorkerStream:
    """Logical worker ``worker``'s endless, seeded stream of training batches, addressed by batch number.

    Passes over the data are independent permutations (the last partial batch of a pass is dropped), so
    ``batch(k)`` depends only on (seed, worker, k).
    """

    def __init__(self, data: ImageSet, batch_size: int, seed: int, worker: int, augment: bool = True) -> None:
        if batch_size > len(data):
            raise ValueError(f"batch_size: {batch_size} is larger than the training set ({len(data)} examples)")
        self.data, self.batch_size, self.seed, self.worker, self.augment = data, batch_size, seed, worker, augment
        self.batches_per_pass = len(data) // batch_size
        self._pass, self._order = -1, np.arange(0)

    def indices(self, k: int) -> np.ndarray:
        pass_, j = divmod(k, self.batches_per_pass)
        if pass_ != self._pass:
            rng = np.random.default_rng([self.seed, _STREAM_TAG, self.worker, pass_])
            self._pass, self._order = pass_, rng.permutation(len(self.data))
        return self._order[j * self.batch_size:(j + 1) * self.batch_size]

    def batch(self, k: int) -> tuple[Tensor, Tensor]:
        generator = None
        if self.augment:
            key = np.random.SeedSequence([self.seed, _AUGMENT_TAG, self.worker, k]).generate_state(1, np.uint64)[0]
            generator = torch.Generator().manual_seed(int(key) >> 1)
        return self.data.batch(self.indices(k), generator)


def eval_batches(data: ImageSet, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """The whole split in order, unaugmented."""
    for start in range(0, len(data), batch_size):
        yield data.batch(np.arange(start, min(start + batch_size, len(data))), None)
