"""The report of an experiment: the paper's tables (mean ± std over seeds) beside the published numbers, the
shape view, the delays, the time to target and speedup (``timing``), and plots; ``python -m dana_ray.report
EXPERIMENT_DIR`` (``cli``).

``load`` reads an experiment folder into a frame of trials; ``tables`` holds the pure functions from that
frame to the tables; ``paper`` the published numbers; ``render`` and ``plots`` the output; ``report.Report``
computes each table once for both.
"""

from __future__ import annotations

import pandas as pd

from dana_ray.report.cli import main
from dana_ray.report.load import is_finished, load_experiment, results_frame
from dana_ray.report.paper import PAPER_MODEL, paper_rows, paper_tables
from dana_ray.report.report import Report
from dana_ray.report.tables import delay_table, shape_table, summarize
from dana_ray.report.timing import time_to_target


def render(trials: pd.DataFrame, fmt: str = "markdown") -> str:
    """The report of ``trials`` as text (``Report(trials).render(fmt)``)."""
    return Report(trials).render(fmt)


__all__ = [
    "PAPER_MODEL",
    "Report",
    "delay_table",
    "is_finished",
    "load_experiment",
    "main",
    "paper_rows",
    "paper_tables",
    "render",
    "results_frame",
    "shape_table",
    "summarize",
    "time_to_target",
]
