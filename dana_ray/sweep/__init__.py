"""``python -m dana_ray.sweep``: a grid of trials run by Ray Tune (``cli``), its Tune side (``tuner``,
``trainable``, ``checkpoints``), and what the person at the terminal sees (``console``, ``interrupt``, ``lock``)."""

from dana_ray.sweep.cli import main

__all__ = ["main"]
