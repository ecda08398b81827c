# my_data.py: Gaussian blobs, one per class, in `dim` dimensions (nothing is read from data_dir).
import numpy as np

from dana_ray import Option, array_dataset, integer, register_dataset


@register_dataset(
    "blobs",
    options={
        "classes": Option(4, integer(2)),
        "dim": Option(16, integer(1)),
        "size": Option(2000, integer(10), "training examples"),
    },
)
def blobs(data_dir, classes=4, dim=16, size=2000):
    rng = np.random.default_rng(12345)  # a fixed seed: the same data in every process
    centres = rng.normal(0.0, 1.0, (classes, dim))

    def split(n):
        labels = rng.integers(0, classes, n)
        return (centres[labels] + rng.normal(0.0, 1.0, (n, dim))).astype(np.float32), labels

    (x_train, y_train), (x_test, y_test) = split(size), split(size // 4)
    return array_dataset(x_train, y_train, x_test, y_test, num_classes=classes)
