"""Tensors in checkpoints: held on the host, whatever device computed them."""

from __future__ import annotations

import torch


def host_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of ``tensor`` in host memory (a checkpoint's form: readable where its device is not, and no
    second full copy on the device). Loading puts it back with ``copy_`` or ``.to(device)``."""
    return tensor.detach().to("cpu", copy=True)
