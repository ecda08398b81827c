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
* ``imagefolder``: any torchvision ``ImageFolder`` tree, ``data_dir/train/<class>/*`` and
  ``data_dir/val/<class>/*``, with a choice of augmentation (``none``; ``cifar``: pad-crop + flip;
  ``imagenet``: random-resized-crop + flip) at ``image_size``, normalised with ``mean``/``std``.
* ``imagenet``: ``imagefolder`` with ImageNet's choices (RandomResizedCrop + flip for training, resize +
  center crop for testing, 224 px, ImageNet's statistics).
* ``arrays``: in-memory arrays from ``data_dir/data.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``);
  ``array_dataset`` builds the same from arrays in a plug-in.

A data set of one's own is one function, registered with its options::

    @register_dataset("my-data", options={"size": Option(1000, integer(1))}, needs_data_dir=False)
    def my_data(data_dir, size=1000) -> DataSet:
        return array_dataset(x_train, y_train, x_test, y_test)

A worker's stream: batch k of logical worker i is fixed by (seed, i, k) alone. The worker's passes over the
training set are seeded permutations keyed by (seed, i, pass), and batch k's augmentation draws from a
generator keyed by (seed, i, k). So a stream position is one integer, a batch can be recomputed anywhere
(any actor, after any restart), and runs are reproducible.
"""

from __future__ import annotations

import importlib.util
import math
import os
import pickle
import socket
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dana_ray.checks import boolean, integer, numbers, one_of, optional
from dana_ray.registry import Option, Registry, resolve_options

_STREAM_TAG = 11
_AUGMENT_TAG = 12
_SPLIT_SEED = 20190101  # the digits train/test split, fixed for every trial


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
    def of(cls, data: "DataSet") -> "DataShape":
        """Of a loaded data set (one test example is read for its shape)."""
        x, _ = data.test.batch(np.arange(1), None)
        return cls(len(data.train), len(data.test), data.num_classes, tuple(int(d) for d in x.shape[1:]))


class TensorImages:
    """Examples held in memory, augmented per batch with a seeded generator.

    ``images``: uint8 NCHW images (divided by ``max_value``), or any float array of examples (used as they
    are, e.g. feature vectors [N, F]); then normalised per channel with ``mean``/``std``. Crop and flip need
    images (NCHW).
    """

    def __init__(self, images: Tensor, labels: Tensor, mean: Sequence[float], std: Sequence[float],
                 max_value: float = 255.0, crop_padding: int = 0, flip: bool = False) -> None:
        if len(images) != len(labels) or images.dim() < 2 or not (images.dtype == torch.uint8 or images.is_floating_point()):
            raise ValueError(f"images: expected uint8 or float examples with one label each, got {images.dtype} "
                             f"{tuple(images.shape)} and {len(labels)} labels")
        if (crop_padding or flip) and images.dim() != 4:
            raise ValueError(f"images: crop and flip need NCHW images, got shape {tuple(images.shape)}")
        self.images, self.labels = images, labels.long()
        shape = (1, -1) + (1,) * (images.dim() - 2)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(shape)
        self.std = torch.tensor(std, dtype=torch.float32).view(shape)
        self.max_value = max_value if images.dtype == torch.uint8 else 1.0
        self.crop_padding, self.flip = crop_padding, flip

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices: np.ndarray, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        x = self.images[index].float().div_(self.max_value)
        if generator is not None:
            x = self._augment(x, generator)
        return (x - self.mean) / self.std, self.labels[index]

    def _augment(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if self.images.dim() != 4:
            return x
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


# -- image folders ---------------------------------------------------------------------------------------------

AUGMENTATIONS = ("none", "cifar", "imagenet")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FolderTransform:
    """How a folder image becomes a tensor: the random part (``draw``: parameters from the batch's own
    generator, in image order) kept apart from the work (``render``: any thread), so a batch's images can be
    decoded and transformed in parallel with exactly the draws of doing them in turn.

    ``augmentation`` "imagenet" draws exactly what torchvision's RandomResizedCrop then RandomHorizontalFlip
    draw; "cifar" what RandomCrop(padding) then RandomHorizontalFlip draw (after a resize to ``image_size``);
    "none" and the test transform draw nothing. (The draws are torchvision's ``get_params``, written with an
    explicit generator: the same numbers from a generator seeded like the global one; tested.)
    """

    augmentation: str
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: bool

    def draw(self, width: int, height: int, generator: torch.Generator) -> tuple:
        """The random parameters of one image's transform, drawn from ``generator`` (never the global one, so
        drawing on a prefetch thread cannot disturb, or be disturbed by, a model's dropout)."""
        if not self.train or self.augmentation == "none":
            return ()
        if self.augmentation == "imagenet":
            crop = _resized_crop_params(width, height, generator)
        else:
            side = self.image_size + 2 * self._padding()
            crop = _crop_params(side, side, self.image_size, generator)
        return crop + (bool(torch.rand(1, generator=generator) < 0.5),)

    def render(self, image: Any, params: tuple, out: np.ndarray) -> None:
        """Transform ``image`` into ``out`` (float32 [3, size, size]): torchvision's transform, then its
        ``to_tensor`` and ``normalize`` element for element (x / 255, - mean, / std in float32), in numpy,
        which lets go of the GIL and starts no thread pool of its own (torch's would compete with the decode
        threads)."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        size = self.image_size
        if self.train and self.augmentation == "imagenet":
            top, left, height, width, flip = params
            image = TF.resized_crop(image, top, left, height, width, [size, size], InterpolationMode.BILINEAR,
                                    antialias=True)
        else:
            resize = size if not (self.augmentation == "imagenet") else round(size * 256 / 224)
            image = TF.center_crop(TF.resize(image, resize, antialias=True), [size, size])
            flip = False
            if self.train and self.augmentation == "cifar":
                top, left, _, _, flip = params
                image = TF.crop(TF.pad(image, self._padding()), top, left, size, size)
        if flip:
            image = TF.hflip(image)
        np.divide(np.asarray(image, np.uint8).transpose(2, 0, 1), np.float32(255), out=out, dtype=np.float32)
        out -= np.asarray(self.mean, np.float32)[:, None, None]
        out /= np.asarray(self.std, np.float32)[:, None, None]

    def _padding(self) -> int:
        return max(1, round(self.image_size / 8))  # CIFAR's 4 pixels at 32 px


def _resized_crop_params(width: int, height: int, generator: torch.Generator,
                         scale: tuple[float, float] = (0.08, 1.0),
                         ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params``, drawing from ``generator``: (top, left, height, width)."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator)).item()
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = torch.randint(0, height - h + 1, size=(1,), generator=generator).item()
            left = torch.randint(0, width - w + 1, size=(1,), generator=generator).item()
            return top, left, h, w
    in_ratio = width / height  # fallback: a central crop
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _crop_params(width: int, height: int, size: int, generator: torch.Generator) -> tuple[int, int, int, int]:
    """torchvision's ``RandomCrop.get_params`` for a square ``size``, drawing from ``generator``."""
    if width == size and height == size:
        return 0, 0, size, size
    top = torch.randint(0, height - size + 1, size=(1,), generator=generator).item()
    left = torch.randint(0, width - size + 1, size=(1,), generator=generator).item()
    return top, left, size, size


class FolderImages:
    """A torchvision ``ImageFolder`` split. A batch is decoded and transformed on ``threads`` threads (PIL's
    decoding and resizing release the GIL); its random draws are made in image order from a generator seeded
    by the batch's own generator, so the batch is the same for any number of threads."""

    slow_batches = True  # decoded from files: worth preparing ahead (``Streams``)

    def __init__(self, root: str, transform: FolderTransform, threads: int = 1) -> None:
        from torchvision.datasets import ImageFolder

        self.folder = ImageFolder(root)
        self.transform = transform
        self.threads = max(1, int(threads))
        self._pool: ThreadPoolExecutor | None = None

    def __len__(self) -> int:
        return len(self.folder)

    def __getstate__(self) -> dict:
        return dict(self.__dict__, _pool=None)

    def _map(self, fn: Callable, items: Sequence) -> list:
        if self.threads == 1 or len(items) == 1:
            return [fn(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="decode")
        return list(self._pool.map(fn, items))

    def batch(self, indices: np.ndarray, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        samples = [self.folder.samples[int(i)] for i in indices]
        images = self._map(lambda sample: self.folder.loader(sample[0]), samples)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator)) if generator is not None else 0
        draws = torch.Generator().manual_seed(seed)
        params = [self.transform.draw(*image.size, draws) for image in images]
        size = self.transform.image_size
        x = torch.empty((len(images), 3, size, size))
        out = x.numpy()
        self._map(lambda k: self.transform.render(images[k], params[k], out[k]), range(len(images)))
        return x, torch.tensor([label for _, label in samples], dtype=torch.long)


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


_CIFAR = {  # name -> (torchvision class name, folder, files, label key, mean, std)
    "cifar10": ("CIFAR10", "cifar-10-batches-py", [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"],
                "labels", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ("CIFAR100", "cifar-100-python", ["train", "test"], "fine_labels",
                 (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _without_md5(cls: type) -> type:
    """torchvision's CIFAR class, reading its files without hashing them first: every actor loads the data
    at start and MD5 costs it about 0.25 s per 186 MB, while ``check_cifar`` (run on every node before a sweep
    launches) already checks each file's structure. A missing file is still refused."""

    class Unhashed(cls):
        def _check_integrity(self) -> bool:
            files = [f for f, _ in self.train_list + self.test_list] + [self.meta["filename"]]
            return all(os.path.isfile(os.path.join(self.root, self.base_folder, f)) for f in files)

        def _load_meta(self) -> None:
            with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    Unhashed.__name__ = cls.__name__
    return Unhashed


def load_cifar(name: str, data_dir: str) -> DataSet:
    from torchvision import datasets

    cls_name, folder, _, _, mean, std = _CIFAR[name]
    cls = _without_md5(getattr(datasets, cls_name))
    check_folders(name, data_dir, (folder,))
    data_dir = os.path.expanduser(data_dir)
    try:
        splits = [cls(data_dir, train=train, download=False) for train in (True, False)]
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted"
        raise ValueError(f"data_dir: {name} under {data_dir!r} is incomplete or corrupted ({error}); expected "
                         f"torchvision's layout {os.path.join(data_dir, cls.base_folder)}/") from error
    train, test = (TensorImages(torch.from_numpy(s.data).permute(0, 3, 1, 2).contiguous(),
                                torch.tensor(s.targets), mean, std, crop_padding=4 * aug, flip=bool(aug))
                   for s, aug in zip(splits, (1, 0)))
    return DataSet(train, test, num_classes=len(splits[0].classes), in_channels=3)


def check_cifar(name: str, data_dir: str) -> DataShape:
    """Every file of torchvision's layout is there and unpickles: the batches into rows of 3x32x32 bytes with
    labels in range, the meta file into the class names; returns the splits' sizes and the class count."""
    from torchvision import datasets

    cls_name, folder, files, label_key, _, _ = _CIFAR[name]
    meta = getattr(datasets, cls_name).meta  # the file and key the loader reads its class names from
    check_folders(name, data_dir, (folder,))
    classes = len(_read_cifar_file(name, data_dir, folder, meta["filename"], lambda entry: list(entry[meta["key"]])))
    rows = {}
    for file in files:
        def labelled(entry: dict) -> int | None:
            data, labels = np.asarray(entry["data"]), np.asarray(entry[label_key])
            ok = (data.ndim == 2 and data.shape[1] == 3 * 32 * 32 and labels.shape == (len(data),)
                  and (len(labels) == 0 or 0 <= labels.min() <= labels.max() < classes))
            return len(data) if ok else None
        rows[file] = _read_cifar_file(name, data_dir, folder, file, labelled)
        if rows[file] is None:
            raise ValueError(f"data_dir: {name} file {os.path.join(os.path.expanduser(data_dir), folder, file)!r} "
                             f"does not hold rows of 3x32x32 bytes with labels in [0, {classes}) "
                             f"(on host {socket.gethostname()})")
    test = rows[files[-1]]
    return DataShape(sum(rows.values()) - test, test, classes, (3, 32, 32))


def _read_cifar_file(name: str, data_dir: str, folder: str, file: str, read: Callable[[dict], Any]) -> Any:
    path = os.path.join(os.path.expanduser(data_dir), folder, file)
    try:
        with open(path, "rb") as f:
            return read(pickle.load(f, encoding="latin1"))
    except Exception as error:  # any unreadable file is the same problem for the user
        raise ValueError(f"data_dir: {name} file {path!r} is unreadable ({type(error).__name__}: "
                         f"{' '.join(str(error).split())}) (on host {socket.gethostname()})") from None


def load_imagefolder(data_dir: str, augmentation: str = "imagenet", image_size: int = 224,
                     mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                     threads: int = 1, name: str = "imagefolder") -> DataSet:
    check_folders(name, data_dir, ("train", "val"))
    data_dir = os.path.expanduser(data_dir)
    mean, std = tuple(mean), tuple(std)
    train, test = (FolderImages(os.path.join(data_dir, split), FolderTransform(augmentation, image_size, mean, std,
                                                                               train=split == "train"), threads)
                   for split in ("train", "val"))
    if train.folder.classes != test.folder.classes:
        raise ValueError(f"data_dir: {data_dir!r} has different class folders in train/ and val/")
    return DataSet(train, test, num_classes=len(train.folder.classes), in_channels=3)


def check_imagefolder(data_dir: str, name: str = "imagefolder", image_size: int = 224) -> DataShape:
    """train/ and val/ hold the same class folders, each class folder holds an image file, and one image per
    split decodes; returns the image counts, the class count and the [3, image_size, image_size] examples."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    check_folders(name, data_dir, ("train", "val"))
    root = os.path.expanduser(data_dir)
    classes = {}
    for split in ("train", "val"):
        classes[split] = sorted(e.name for e in os.scandir(os.path.join(root, split)) if e.is_dir())
        if not classes[split]:
            raise ValueError(f"data_dir: {name} needs class folders in {os.path.join(root, split)!r}, found none "
                             f"(on host {socket.gethostname()})")
    if classes["train"] != classes["val"]:
        raise ValueError(f"data_dir: {name} under {root!r} has different class folders in train/ and val/")
    images = {}
    for split in ("train", "val"):  # the loader's labels are the class folders: in range by construction
        images[split] = 0
        for cls in classes[split]:
            folder = os.path.join(root, split, cls)
            files = sorted(e.path for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS))
            if not files:
                raise ValueError(f"data_dir: {name} class folder {folder!r} holds no image file "
                                 f"(on host {socket.gethostname()})")
            images[split] += len(files)
        _check_decodes(name, files[0])  # one image per split, decoded as the loader will
    return DataShape(images["train"], images["val"], len(classes["train"]), (3, image_size, image_size))


def _check_decodes(name: str, path: str) -> None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.convert("RGB").size  # noqa: B018 - decodes the pixels
    except Exception as error:  # noqa: BLE001 - any undecodable file is the same problem
        raise ValueError(f"data_dir: {name} image {path!r} cannot be decoded ({type(error).__name__}) "
                         f"(on host {socket.gethostname()})") from None


ARRAYS_FILE = "data.npz"


def array_dataset(x_train: Any, y_train: Any, x_test: Any, y_test: Any, num_classes: int,
                  mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                  crop_padding: int = 0, flip: bool = False) -> DataSet:
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
    make = lambda x, y, aug: TensorImages(x, y, mean, std, crop_padding=crop_padding * aug,  # noqa: E731
                                          flip=flip and aug)
    return DataSet(make(x_train, y_train, True), make(x_test, y_test, False), num_classes=num_classes,
                   in_channels=int(x_train.shape[1]))


def check_arrays_content(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                         num_classes: Any) -> None:
    """Raise a ValueError naming the array and the problem unless: ``num_classes`` is an integer >= 1; the
    examples are uint8 or floating point, all finite, with one shape per example shared by both splits (at
    least [N, F]); the labels are integers, one per example, each in [0, num_classes); no split is empty."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes: expected an integer >= 1, got {num_classes!r}")
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim < 2 or len(x) == 0:
            raise ValueError(f"x_{split}: expected at least one example of shape [F] or [C, H, W], got an array "
                             f"of shape {x.shape}")
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
            raise ValueError(f"y_{split}: label {label} is outside [0, {num_classes}) (num_classes {num_classes}); "
                             f"declare the class count the labels need")
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
        raise ValueError(f"data_dir: arrays needs the file {path!r}, which does not exist "
                         f"(on host {host}); data sets are never downloaded")
    names = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path) as arrays:
            read = {k: arrays[k] for k in arrays.files if k in (*names, "num_classes")}
    except Exception as error:  # any unreadable file is the same problem for the user
        raise ValueError(f"data_dir: arrays file {path!r} is unreadable ({type(error).__name__}) "
                         f"(on host {host})") from None
    missing = sorted(k for k in names if k not in read)
    if missing:
        raise ValueError(f"data_dir: arrays file {path!r} lacks {', '.join(missing)} (on host {host})")
    values, stored = [read[k] for k in names], read.get("num_classes")
    if stored is not None:
        stored = int(stored) if stored.ndim == 0 and np.issubdtype(stored.dtype, np.integer) else stored.tolist()
        if num_classes is not None and stored != num_classes:
            raise ValueError(f"dataset_options.num_classes: {num_classes} differs from the num_classes {stored!r} "
                             f"stored in {path!r}")
    classes = num_classes if num_classes is not None else stored
    if classes is None:
        raise ValueError(f"data_dir: arrays file {path!r} declares no class count: store num_classes in it, or "
                         f"set dataset_options: {{num_classes: K}} (the largest label is not a declaration)")
    return (*values, classes)


def check_folders(name: str, data_dir: str | None, folders: Sequence[str]) -> None:
    """Raise a ValueError naming this host and the path if ``data_dir`` (``~`` expanded here, on the node that
    reads it) lacks one of ``folders``; data sets are never downloaded."""
    for sub in folders:
        path = os.path.join(os.path.expanduser(data_dir or ""), sub)
        if not data_dir or not os.path.isdir(path):
            raise ValueError(f"data_dir: {name} needs the directory {path!r}, which does not exist "
                             f"(on host {socket.gethostname()}); data sets are never downloaded")


# -- the registry ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetSpec:
    fn: Callable[..., DataSet]          # fn(data_dir, **options) -> DataSet
    options: dict[str, Option] = field(default_factory=dict)
    needs_data_dir: bool = False
    #: check(data_dir, **options) -> DataShape: raise a ValueError (naming the host and path) if the data
    #: under ``data_dir`` cannot be read, else return what its metadata says (None: it says nothing); run on
    #: every node before a sweep launches. None: no files to check (the data set is built in the driver).
    check: Callable[..., None] | None = None


#: Every data set by the exact name configs use.
DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(name: str, options: dict[str, Option] | None = None, needs_data_dir: bool = False,
                     check: Callable[..., None] | None = None) -> Callable:
    """Decorator: register ``fn(data_dir, **options) -> DataSet`` as data set ``name``; ``check(data_dir,
    **options)`` verifies the files before anything launches."""
    def register(fn: Callable[..., DataSet]) -> Callable[..., DataSet]:
        DATASETS.register(name, DatasetSpec(fn, dict(options or {}), needs_data_dir, check))
        return fn
    return register


_THREADS = Option(None, optional(integer(1)), "decode threads per batch (default: the actor's cpus)")
_FOLDER_OPTIONS = {
    "augmentation": Option("imagenet", one_of(*AUGMENTATIONS), "none | cifar (pad-crop + flip) | imagenet"),
    "image_size": Option(224, integer(1), "side of the square images the model sees"),
    "mean": Option(IMAGENET_MEAN, numbers(0.0), "per-channel mean for normalisation"),
    "std": Option(IMAGENET_STD, numbers(0.0, above=True), "per-channel std for normalisation"),
    "threads": _THREADS,
}

register_dataset("digits")(lambda data_dir: load_digits())
for _name in _CIFAR:
    register_dataset(_name, needs_data_dir=True, check=lambda data_dir, _n=_name: check_cifar(_n, data_dir))(
        lambda data_dir, _n=_name: load_cifar(_n, data_dir))
register_dataset("imagefolder", options=_FOLDER_OPTIONS, needs_data_dir=True,
                 check=lambda data_dir, image_size=224, **_: check_imagefolder(data_dir, image_size=image_size))(
    load_imagefolder)
register_dataset("imagenet", options={"image_size": _FOLDER_OPTIONS["image_size"], "threads": _THREADS},
                 needs_data_dir=True,
                 check=lambda data_dir, image_size=224, **_: check_imagefolder(data_dir, "imagenet", image_size))(
    lambda data_dir, image_size=224, threads=None: load_imagefolder(data_dir, "imagenet", image_size,
                                                                    threads=threads, name="imagenet"))
register_dataset("arrays", options={"crop_padding": Option(0, integer(0), "pixels of zero padding for random crops"),
                                   "flip": Option(False, boolean(), "random horizontal flips"),
                                   "num_classes": Option(None, optional(integer(1)),
                                                         "the class count (else data.npz's num_classes)")},
                 needs_data_dir=True, check=lambda data_dir, num_classes=None, **_: check_arrays(data_dir, num_classes))(
    load_arrays)


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
        text = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"dataset {name!r} cannot be built: {text}") from None
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
        self._permutation: tuple[int, np.ndarray] = (-1, np.arange(0))  # (pass, order), replaced in one store

    def indices(self, k: int) -> np.ndarray:
        pass_, j = divmod(k, self.batches_per_pass)
        cached, order = self._permutation  # one read: a prefetch thread may replace it meanwhile
        if pass_ != cached:
            order = np.random.default_rng([self.seed, _STREAM_TAG, self.worker, pass_]).permutation(len(self.data))
            self._permutation = (pass_, order)
        return order[j * self.batch_size:(j + 1) * self.batch_size]

    def batch(self, k: int) -> tuple[Tensor, Tensor]:
        generator = None
        if self.augment:
            key = np.random.SeedSequence([self.seed, _AUGMENT_TAG, self.worker, k]).generate_state(1, np.uint64)[0]
            generator = torch.Generator().manual_seed(int(key) >> 1)
        return self.data.batch(self.indices(k), generator)


class Streams:
    """Every logical worker's stream, for one gradient actor, with batches prepared ahead.

    A data set whose batches are slow to make (``slow_batches = True``: decoded from files) gets a background
    thread that prepares up to ``prefetch`` batches while the model computes: the next batch of each of the
    workers served longest ago (in round robin, exactly the next jobs; with one worker per actor, that
    worker's next batch). A batch is the same whether prefetched or made on demand (a function of (seed,
    worker, batch) only), so prefetching never changes a number; a prefetched batch that is not the one a job
    asks for (after a restore) is dropped.
    """

    def __init__(self, data: ImageSet, batch_size: int, seed: int, prefetch: int = 2) -> None:
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.prefetch = prefetch if getattr(data, "slow_batches", False) else 0
        self._streams: dict[int, WorkerStream] = {}
        self._next: dict[int, int] = {}  # worker -> its next batch, least recently served first
        self._pending: dict[int, tuple[int, Future]] = {}  # worker -> (batch, its preparation)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="prefetch") if self.prefetch else None
        self.waited_s = 0.0  # time spent in ``batch`` (waiting for, or making, batches)

    def stream(self, worker: int) -> WorkerStream:
        if worker not in self._streams:
            self._streams[worker] = WorkerStream(self.data, self.batch_size, self.seed, worker)
        return self._streams[worker]

    def batch(self, worker: int, k: int) -> tuple[Tensor, Tensor]:
        """Batch ``k`` of logical worker ``worker``; then the preparation of the next ones starts."""
        started = time.perf_counter()
        pending = self._pending.pop(worker, None)
        if pending is not None and pending[0] == k:
            out = pending[1].result()
        else:
            out = self.stream(worker).batch(k)
        self._next.pop(worker, None)
        self._next[worker] = k + 1
        self._prepare()
        self.waited_s += time.perf_counter() - started
        return out

    def _prepare(self) -> None:
        if self._thread is None:
            return
        for worker, k in self._next.items():
            if len(self._pending) >= self.prefetch:
                break
            if worker not in self._pending:
                self._pending[worker] = (k, self._thread.submit(self.stream(worker).batch, k))

    def close(self) -> None:
        """Stop the background thread (batches being prepared are dropped)."""
        if self._thread is not None:
            self._thread.shutdown(wait=True, cancel_futures=True)
            self._thread, self._pending = None, {}


def eval_batches(data: ImageSet, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """The whole split in order, unaugmented."""
    for start in range(0, len(data), batch_size):
        yield data.batch(np.arange(start, min(start + batch_size, len(data))), None)
