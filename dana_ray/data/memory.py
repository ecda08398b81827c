"""Examples held in memory, augmented per batch with a seeded generator (CIFAR's pad-crop and flip)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


class TensorImages:
    """Examples held in memory, augmented per batch with a seeded generator.

    ``images``: uint8 NCHW images (divided by ``max_value``), or any float array of examples (used as they
    are, e.g. feature vectors [N, F]); then normalised per channel with ``mean``/``std``. Crop and flip need
    images (NCHW).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        max_value: float = 255.0,
        crop_padding: int = 0,
        flip: bool = False,
    ) -> None:
        if (
            len(images) != len(labels)
            or images.dim() < 2
            or not (images.dtype == torch.uint8 or images.is_floating_point())
        ):
            raise ValueError(
                f"images: expected uint8 or float examples with one label each, got {images.dtype} "
                f"{tuple(images.shape)} and {len(labels)} labels"
            )
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
            rows = (top[:, None] + torch.arange(h))[:, None, :, None]  # n,1,h,1
            cols = (left[:, None] + torch.arange(w))[:, None, None, :]  # n,1,1,w
            x = padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols]
        if self.flip:
            flip = torch.rand(n, generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x
