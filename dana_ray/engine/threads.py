"""How many torch threads a process computes on: one rule for every process that computes or updates."""

from __future__ import annotations

import os
import sys

import torch

#: Inductor's setting for the compile workers it starts (default: min(32, cores) per compiling process).
COMPILE_THREADS_ENV = "TORCHINDUCTOR_COMPILE_THREADS"


def torch_threads(cpus: float, asked: int | None = None) -> int:
    """The torch intra-op threads of a process that reserves ``cpus`` CPUs: ``asked`` (``compute.cpu_threads``)
    where set, else ``round(cpus)``, at least 1. Ray starts every actor with one torch thread whatever it
    reserves, and the work (a gradient, a memory-bound update) uses a thread per reserved core. CPU results
    depend on the count (kernels sum in another order), so it is a function of the config alone."""
    return asked if asked is not None else max(1, round(cpus))


def use_threads(count: int) -> int:
    """Set torch's intra-op threads in this process to ``count``, and the compile workers ``torch.compile``
    may start (``fused_updates``) to as many, not one per core of the node; return the threads it had."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    os.environ[COMPILE_THREADS_ENV] = str(count)  # read when Inductor's config is first imported
    config = sys.modules.get("torch._inductor.config")
    if config is not None:  # imported already: set it there too
        config.compile_threads = count  # type: ignore[attr-defined]
    return before
