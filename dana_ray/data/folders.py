"""Image folders (torchvision's ``ImageFolder`` layout, ``data_dir/train/<class>/*`` and ``data_dir/val/...``):
``imagefolder`` with a choice of augmentation, and ``imagenet`` with ImageNet's.

A batch's images are decoded and transformed on ``threads`` threads; their random draws are made in image
order from the batch's own generator (torchvision's ``get_params``, written with ``generator=``), so a batch
is the same whatever the thread count, and never touches the global generator.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dana_ray.data.sets import DataSet, DataShape, check_folders

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
            image = TF.resized_crop(
                image, top, left, height, width, [size, size], InterpolationMode.BILINEAR, antialias=True
            )
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


def _resized_crop_params(
    width: int,
    height: int,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params``, drawing from ``generator``: (top, left, height, width)."""
    area = height * width
    low, high = (float(v) for v in torch.log(torch.tensor(ratio)))  # float32 logs, as torchvision's
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect_ratio = torch.exp(torch.empty(1).uniform_(low, high, generator=generator)).item()
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, size=(1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, size=(1,), generator=generator).item())
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
    top = int(torch.randint(0, height - size + 1, size=(1,), generator=generator).item())
    left = int(torch.randint(0, width - size + 1, size=(1,), generator=generator).item())
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
        params = [self.transform.draw(image.size[0], image.size[1], draws) for image in images]
        size = self.transform.image_size
        x = torch.empty((len(images), 3, size, size))
        out = x.numpy()
        self._map(lambda k: self.transform.render(images[k], params[k], out[k]), range(len(images)))
        return x, torch.tensor([label for _, label in samples], dtype=torch.long)


def load_imagefolder(
    data_dir: str,
    augmentation: str = "imagenet",
    image_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    threads: int = 1,
    name: str = "imagefolder",
) -> DataSet:
    check_folders(name, data_dir, ("train", "val"))
    data_dir = os.path.expanduser(data_dir)
    mean, std = tuple(mean), tuple(std)
    train, test = (
        FolderImages(
            os.path.join(data_dir, split),
            FolderTransform(augmentation, image_size, mean, std, train=split == "train"),
            threads,
        )
        for split in ("train", "val")
    )
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
            raise ValueError(
                f"data_dir: {name} needs class folders in {os.path.join(root, split)!r}, found none "
                f"(on host {socket.gethostname()})"
            )
    if classes["train"] != classes["val"]:
        raise ValueError(f"data_dir: {name} under {root!r} has different class folders in train/ and val/")
    images = {}
    for split in ("train", "val"):  # the loader's labels are the class folders: in range by construction
        images[split] = 0
        for cls in classes[split]:
            folder = os.path.join(root, split, cls)
            files = sorted(
                e.path for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS)
            )
            if not files:
                raise ValueError(
                    f"data_dir: {name} class folder {folder!r} holds no image file (on host {socket.gethostname()})"
                )
            images[split] += len(files)
        _check_decodes(name, files[0])  # one image per split, decoded as the loader will
    return DataShape(images["train"], images["val"], len(classes["train"]), (3, image_size, image_size))


def _check_decodes(name: str, path: str) -> None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.convert("RGB").size  # noqa: B018 - decodes the pixels
    except Exception as error:
        raise ValueError(
            f"data_dir: {name} image {path!r} cannot be decoded ({type(error).__name__}) "
            f"(on host {socket.gethostname()})"
        ) from None
