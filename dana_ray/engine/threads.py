"""How many torch threads a process computes on: one rule for every process that computes or updates."""

from __future__ import annotations

import torch


def torch_threads(cpus: float, asked: int | None = None) -> int:
    """The torch intra-op threads of a process that reserves ``cpus`` CPUs: ``asked`` (``compute.cpu_threads``)
    where set, else ``round(cpus)``, at least 1. Ray starts every actor with one torch thread whatever it
    reserves, and the work (a gradient, a memory-bound update) uses a thread per reserved core. CPU results
    depend on the count (kernels sum in another order), so it is a function of the config alone."""
    return asked if asked is not None else max(1, round(cpus))


def use_threads(count: int) -> int:
    """Set torch's intra-op threads in this process to ``count``; return the count it had."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    return before
