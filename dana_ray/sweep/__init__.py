"""``python -m dana_ray.sweep``: a grid of trials run by Ray Tune (``cli``), its Tune side (``tuner``,
``trainable``, ``checkpoints``, ``resume``), and what the person at the terminal sees (``console``,
``signals``, ``interrupt``, ``lock``). Importing it imports nothing heavy: ``python -m dana_ray.sweep``
handles stop signals before Ray, Tune and torch are imported (``__main__``)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """The sweep's command line (``sweep.cli.main``): its exit code."""
    from dana_ray.sweep.cli import main as sweep

    return sweep(argv)


__all__ = ["main"]
