"""Time to target and speedup: how long each rule took to reach a test error, on the simulated clock.

For each cell (model, data set, schedule, N, rule) and each finished trial, the *time to target* is the clock
at the end of the first epoch whose test error is at most the target (the resolution is one epoch: test error
is measured at epoch ends), and the epochs it took. The clock is ``sim_time`` (``schedules/clock.py``: the
schedule's time model; one unit = one batch of a worker at nominal speed), or ``wall_time`` under ``arrival``
(real asynchrony on Ray, whose order has no time model).

The target is, per (model, data set, schedule), the single-worker baseline's final mean test error plus
``TOLERANCE`` percentage points (``--tolerance``), or a fixed error for every group (``--target-error``).
Speedup is the baseline's mean time to target over the cell's (``speedup_vs_baseline``), and the same against
the synchronous reference rule at the same N (``speedup_vs_sync``: SSGD, ``algorithms.SYNCHRONOUS_REFERENCE``):
both only where every seed of both cells reached the target (else the cell says how many did).
"""

from __future__ import annotations

import math

import pandas as pd

from dana_ray.algorithms import SYNCHRONOUS_REFERENCE, is_single_worker
from dana_ray.report.tables import GROUP, rule_order
from dana_ray.schedules import ARRIVAL, Trace

#: Percentage points above the baseline's final mean error that count as reaching it: about the spread of
#: one seed's final error around the mean on the quickstart's digits, and the paper's "within one point".
TOLERANCE = 1.0

COLUMNS = GROUP + [
    "num_workers",
    "algorithm",
    "clock",
    "target",
    "time",
    "time_std",
    "epochs",
    "reached",
    "n",
    "speedup_vs_baseline",
    "speedup_vs_sync",
]


def clock_of(schedule: str) -> str:
    """The row key a schedule's times are read from: ``wall_time`` under ``arrival``, else ``sim_time``."""
    return "wall_time" if schedule == ARRIVAL else "sim_time"


def times_column(schedule: str) -> str:
    """The trials frame's column of per-epoch times on ``clock_of(schedule)``: ``wall_times`` or ``sim_times``."""
    return clock_of(schedule) + "s"


def clock_unit(schedule: str) -> str:
    """What one unit of ``clock_of(schedule)`` is, in words."""
    if clock_of(schedule) == "wall_time":
        return "seconds (wall_time)"
    return "simulated seconds (the trace's)" if schedule == Trace.name else "simulated time units"


def first_reached(curve: list[float], times: list[float], target: float) -> tuple[float, int]:
    """(time, epochs) at the end of the first epoch whose error is at most ``target``; (nan, 0) if none."""
    for epoch, (error, time) in enumerate(zip(curve, times), start=1):
        if error <= target:
            return time, epoch
    return math.nan, 0


def time_to_target(
    trials: pd.DataFrame, target_error: float | None = None, tolerance: float = TOLERANCE
) -> pd.DataFrame:
    """One row per cell of ``trials`` (a frame of trials with ``curve`` and ``sim_times``/``wall_times``): the
    target, the mean and std over seeds of the time to reach it and the mean epochs (over the seeds that
    reached it), how many of the finished seeds reached it, and the speedups (see the module docstring).
    A group with no finished baseline and no ``target_error`` has no rows."""
    rows = []
    if not {"curve", "sim_times", "wall_times"} <= set(trials.columns):  # a frame from before the clock
        return pd.DataFrame(columns=COLUMNS)
    done = trials[trials["finished"]]
    for (model, dataset, schedule), part in done.groupby(GROUP, sort=False):
        target = target_error
        if target is None:
            baseline = part[part["algorithm"].map(is_single_worker)]
            if baseline.empty:
                continue
            target = float(baseline["test_error"].mean()) + tolerance
        for (num_workers, algorithm), cell in part.groupby(["num_workers", "algorithm"], sort=False):
            reached = [first_reached(c, t, target) for c, t in zip(cell["curve"], cell[times_column(schedule)])]
            times = [t for t, _ in reached if not math.isnan(t)]
            rows.append(
                {
                    "model": model,
                    "dataset": dataset,
                    "schedule": schedule,
                    "num_workers": num_workers,
                    "algorithm": algorithm,
                    "clock": clock_of(schedule),
                    "target": target,
                    "time": sum(times) / len(times) if times else math.nan,
                    "time_std": pd.Series(times).std() if len(times) > 1 else math.nan,
                    "epochs": sum(e for _, e in reached if e) / len(times) if times else math.nan,
                    "reached": len(times),
                    "n": len(cell),
                }
            )
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.DataFrame(rows)
    table["speedup_vs_baseline"] = [_speedup(table, row, baseline=True) for _, row in table.iterrows()]
    table["speedup_vs_sync"] = [_speedup(table, row, baseline=False) for _, row in table.iterrows()]
    table = table.sort_values(
        GROUP + ["num_workers", "algorithm"], key=lambda c: c.map(rule_order) if c.name == "algorithm" else c
    )
    return table[COLUMNS].reset_index(drop=True)


def _speedup(table: pd.DataFrame, row: pd.Series, baseline: bool) -> float:
    """The reference cell's mean time over ``row``'s, where every seed of both reached the target."""
    group = (table["model"] == row["model"]) & (table["dataset"] == row["dataset"])
    group &= table["schedule"] == row["schedule"]
    if baseline:
        reference = table[group & table["algorithm"].map(is_single_worker)]
    else:
        reference = table[
            group & (table["algorithm"] == SYNCHRONOUS_REFERENCE) & (table["num_workers"] == row["num_workers"])
        ]
    if reference.empty or row["reached"] < row["n"] or row["n"] == 0:
        return math.nan
    ref = reference.iloc[0]
    if ref["reached"] < ref["n"] or not row["time"] > 0:
        return math.nan
    return float(ref["time"] / row["time"])


def render_time_to_target(table: pd.DataFrame, target_error: float | None, tolerance: float) -> str:
    """``time_to_target``'s table as markdown, one block per group."""
    blocks = []
    fmt = lambda v, spec: "" if pd.isna(v) else format(v, spec)
    for (model, dataset, schedule), part in table.groupby(GROUP, sort=False):
        target = part["target"].iloc[0]
        how = "given" if target_error is not None else f"the baseline's final mean + {tolerance:g}"
        unit = clock_unit(schedule)
        versus = bool((part["algorithm"] == SYNCHRONOUS_REFERENCE).any())  # its column only where it ran
        header = ["workers", "algorithm", "time to target", "std", "epochs", "reached", "speedup vs baseline"]
        header += [f"vs {SYNCHRONOUS_REFERENCE}"] if versus else []
        lines = [
            f"### Time to target: {model} on {dataset}, {schedule} (test error <= {target:.2f} %, {how}; in {unit})",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for _, r in part.iterrows():
            cells = [
                str(r["num_workers"]),
                r["algorithm"],
                fmt(r["time"], ".1f") or "not reached",
                fmt(r["time_std"], ".1f"),
                fmt(r["epochs"], ".1f"),
                f"{r['reached']} of {r['n']}",
                fmt(r["speedup_vs_baseline"], ".2f"),
            ]
            cells += [fmt(r["speedup_vs_sync"], ".2f")] if versus else []
            lines.append("| " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n" if blocks else ""
