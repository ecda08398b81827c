"""What a Ray process computes on: the GPUs it reserved, and no other.

Ray sets ``CUDA_VISIBLE_DEVICES`` only in a process that reserves a GPU; one that reserves none (a CPU-sized
gradient actor, the ParameterServer, a shard, a Tune trial's own process) would otherwise see every GPU of
its node and, with ``device: auto``, make a CUDA context and a model on GPU 0 behind Ray's back, and a CPU
compile (``fused_updates``) would initialise CUDA there too. ``hide_unreserved_gpus`` empties
``CUDA_VISIBLE_DEVICES`` in such a process; it must run before anything in the process touches CUDA (torch
reads the variable once), which is the first thing each actor's constructor does.
"""

from __future__ import annotations

import os

import ray
import torch

from dana_ray.engine.build import resolve_device


def hide_unreserved_gpus() -> bool:
    """Hide every GPU from this process if it reserved none; whether it did."""
    if ray.get_gpu_ids():
        return True
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    return False


def reserved_device(name: str, gpus_per_actor: float) -> torch.device:
    """``compute.device`` resolved in a gradient actor: a GPU only if it reserved one (see the module)."""
    hide_unreserved_gpus()
    return resolve_device(name, gpus_per_actor)
