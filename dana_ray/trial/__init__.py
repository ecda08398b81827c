"""One trial: ``run`` (``dana_ray.run``) and its command line, ``python -m dana_ray.trial`` (``cli``)."""

from dana_ray.trial.cli import main
from dana_ray.trial.run import run

__all__ = ["main", "run"]
