"""Data sets and each logical worker's seeded stream of batches.

* ``digits`` (the embedded default, ``digits.py``): scikit-learn's 8x8 handwritten digits, shipped inside the
  installed package;
* ``cifar10``, ``cifar100`` (``cifar.py``): torchvision's on-disk format under ``data_dir``;
* ``imagefolder``, ``imagenet`` (``folders.py``): an ``ImageFolder`` tree, ``data_dir/train/<class>/*`` and
  ``data_dir/val/<class>/*``, decoded on threads with seeded augmentation;
* ``arrays`` (``arrays.py``): ``data_dir/data.npz``; ``array_dataset`` builds the same from arrays in memory.

``sets.py`` holds the registry (``register_dataset``: a data set of one's own is one function) and what the
engine sees of a data set; ``streams.py`` the batch streams, a function of (seed, worker, batch) alone.
Nothing is ever downloaded.
"""

from dana_ray.core.checks import boolean, integer, numbers, one_of, optional
from dana_ray.core.registry import Option
from dana_ray.data.arrays import array_dataset, check_arrays, load_arrays
from dana_ray.data.cifar import LAYOUTS, check_cifar, load_cifar
from dana_ray.data.digits import digits_arrays, load_digits
from dana_ray.data.folders import (
    AUGMENTATIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    FolderImages,
    FolderTransform,
    check_imagefolder,
    load_imagefolder,
)
from dana_ray.data.memory import TensorImages
from dana_ray.data.sets import (
    DATASETS,
    DataSet,
    DatasetSpec,
    DataShape,
    ImageSet,
    check_dataset,
    check_generated,
    load_dataset,
    register_dataset,
)
from dana_ray.data.streams import Streams, WorkerStream, eval_batches

_THREADS = Option(None, optional(integer(1)), "decode threads per batch (default: the actor's cpus)")
_FOLDER_OPTIONS = {
    "augmentation": Option("imagenet", one_of(*AUGMENTATIONS), "none | cifar (pad-crop + flip) | imagenet"),
    "image_size": Option(224, integer(1), "side of the square images the model sees"),
    "mean": Option(IMAGENET_MEAN, numbers(0.0), "per-channel mean for normalisation"),
    "std": Option(IMAGENET_STD, numbers(0.0, above=True), "per-channel std for normalisation"),
    "threads": _THREADS,
}

register_dataset("digits")(lambda data_dir: load_digits())
for _name in LAYOUTS:
    register_dataset(_name, needs_data_dir=True, check=lambda data_dir, _n=_name: check_cifar(_n, data_dir))(
        lambda data_dir, _n=_name: load_cifar(_n, data_dir)
    )
register_dataset(
    "imagefolder",
    options=_FOLDER_OPTIONS,
    needs_data_dir=True,
    check=lambda data_dir, image_size=224, **_: check_imagefolder(data_dir, image_size=image_size),
)(load_imagefolder)
register_dataset(
    "imagenet",
    options={"image_size": _FOLDER_OPTIONS["image_size"], "threads": _THREADS},
    needs_data_dir=True,
    check=lambda data_dir, image_size=224, **_: check_imagefolder(data_dir, "imagenet", image_size),
)(
    lambda data_dir, image_size=224, threads=None: load_imagefolder(
        data_dir, "imagenet", image_size, threads=threads, name="imagenet"
    )
)
register_dataset(
    "arrays",
    options={
        "crop_padding": Option(0, integer(0), "pixels of zero padding for random crops"),
        "flip": Option(False, boolean(), "random horizontal flips"),
        "num_classes": Option(None, optional(integer(1)), "the class count (else data.npz's num_classes)"),
    },
    needs_data_dir=True,
    check=lambda data_dir, num_classes=None, **_: check_arrays(data_dir, num_classes),
)(load_arrays)


__all__ = [
    "DATASETS",
    "DataSet",
    "DataShape",
    "DatasetSpec",
    "FolderImages",
    "FolderTransform",
    "ImageSet",
    "Streams",
    "TensorImages",
    "WorkerStream",
    "array_dataset",
    "check_dataset",
    "check_generated",
    "digits_arrays",
    "eval_batches",
    "load_dataset",
    "load_digits",
    "register_dataset",
]
