"""The DANA paper's published test errors (Tables 3-8, ``paper_tables.csv``), read once per process."""

from __future__ import annotations

import functools
from importlib import resources

import pandas as pd

from dana_ray.algorithms import ALGORITHMS

#: Our model name -> the paper's, where the paper has tables of it.
PAPER_MODEL = {"resnet20": "resnet20", "wrn-16-4": "wrn", "wrn": "wrn"}


@functools.cache
def _read() -> pd.DataFrame:
    with resources.files("dana_ray.report").joinpath("paper_tables.csv").open() as f:
        return pd.read_csv(f)


def paper_tables() -> pd.DataFrame:
    """The published table: table, model, dataset, schedule, workers, algorithm, test_error_mean/std (a copy:
    the file is read once per process)."""
    return _read().copy()


def paper_rows() -> dict[str, str]:
    """Our rule name -> its row label in the paper's tables, as each rule declares (``paper_name``)."""
    return {name: rule.paper_name for name, rule in ALGORITHMS.items() if rule.paper_name}
