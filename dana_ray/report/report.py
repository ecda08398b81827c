"""One experiment's report: every table computed once from the frame of trials, then rendered as text or written
into a folder with the plots."""

from __future__ import annotations

import os

import pandas as pd

from dana_ray.report.paper import paper_tables
from dana_ray.report.plots import plot_curves, plot_delays, plot_error_vs_time, plot_error_vs_workers
from dana_ray.report.render import render_compact, render_delays, render_text
from dana_ray.report.tables import delay_table, shape_table, summarize
from dana_ray.report.timing import TOLERANCE, render_time_to_target, time_to_target


class Report:
    """The summary (with the paper's numbers), the shape view, the delays and the time to target of ``trials``
    (a frame of trials: ``load_experiment``'s), each computed once. ``target_error``/``tolerance``: the target
    (``report/timing.py``)."""

    def __init__(self, trials: pd.DataFrame, target_error: float | None = None, tolerance: float = TOLERANCE) -> None:
        self.trials = trials
        paper = paper_tables()
        self.summary = summarize(trials, paper=paper)
        self.shape = shape_table(self.summary, paper)
        self.delays = delay_table(trials)
        self.target_error, self.tolerance = target_error, tolerance
        self.timing = time_to_target(trials, target_error, tolerance)
        #: (folder, reason) of every trial folder whose files cannot be read
        self.unreadable: list[tuple[str, str]] = list(trials.attrs.get("broken", []))

    def render(self, fmt: str = "markdown") -> str:
        """The report as ``fmt``: ``text``, the compact tables for a terminal (``render_compact``); or the
        summary as markdown, csv or latex, markdown adding the delays and the time to target."""
        if fmt == "text":
            return render_compact(self.summary, self.shape, self.timing, self.unreadable)
        text = render_text(self.summary, self.shape, self.unreadable, fmt)
        if fmt == "markdown" and len(self.delays):
            text += "\n" + render_delays(self.delays)
        if fmt == "markdown" and len(self.timing):
            text += "\n" + render_time_to_target(self.timing, self.target_error, self.tolerance)
        return text

    def write(self, out: str) -> list[str]:
        """The tables in every format, the shape and delays as CSV, and the plots, into ``out``; returns the
        files written."""
        os.makedirs(out, exist_ok=True)
        files = []
        for fmt, name in (("csv", "summary.csv"), ("latex", "summary.tex"), ("markdown", "summary.md")):
            path = os.path.join(out, name)
            with open(path, "w") as f:
                f.write(render_text(self.summary, self.shape, self.unreadable, fmt))
            files.append(path)
        if len(self.shape):
            files.append(_csv(self.shape, os.path.join(out, "shape.csv")))
        files += plot_error_vs_workers(self.summary, os.path.join(out, "error_vs_workers.png"))
        files += plot_curves(self.trials, os.path.join(out, "curves_largest_n.png"))
        if len(self.delays):
            files.append(_csv(self.delays, os.path.join(out, "delays.csv")))
            files += plot_delays(self.trials, os.path.join(out, "delays_largest_n.png"))
        if len(self.timing):
            files.append(_csv(self.timing, os.path.join(out, "time_to_target.csv")))
        files += plot_error_vs_time(self.trials, self.timing, os.path.join(out, "error_vs_time_largest_n.png"))
        return files


def _csv(table: pd.DataFrame, path: str) -> str:
    table.to_csv(path, index=False)
    return path
