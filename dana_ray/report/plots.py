"""The report's plots, drawn on matplotlib ``Figure`` objects (no pyplot, so no backend to choose and nothing
global changed in the caller's process), every rule in the same colour and marker in each: test error
against workers per rule (the baseline a reference line, the paper's points hollow),
learning curves at the largest N, the distribution of delays per rule at the largest N, and test error
against the (simulated) clock at the largest N."""

from __future__ import annotations

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dana_ray.algorithms import is_single_worker
from dana_ray.report.tables import GROUP, add_histograms, rows_of_group, rule_order
from dana_ray.report.timing import clock_unit, times_column

#: Matplotlib's ten default colours, then eight more that are told apart from them: a colour per rule for the
#: first 18 rules of the registry (the built-in ones), before any repeats.
_COLORS = [f"C{k}" for k in range(10)] + ["black", "gold", "teal", "navy", "lime", "maroon", "orchid", "slategray"]


#: A marker per rule too, so that lines of close colours, or drawn over each other, are still told apart.
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p", "d", "H", "8", "1", "2", "3"]
#: Panels per row: a figure stays at most 4 x 4 in x 120 dpi = 1,920 px wide.
_MOST_COLUMNS = 4


def _color(algorithm: str) -> str:
    """The same colour for an algorithm in every plot."""
    return _COLORS[rule_order(algorithm) % len(_COLORS)]


def _marker(algorithm: str) -> str:
    """The same marker for an algorithm in every plot."""
    return _MARKERS[rule_order(algorithm) % len(_MARKERS)]


def _figure(groups: int) -> tuple[Figure, list[Axes]]:
    """``groups`` panels: side by side, at most ``_MOST_COLUMNS`` a row (unused places hidden)."""
    columns = min(groups, _MOST_COLUMNS)
    rows = -(-groups // columns)
    width = 6.0 if groups <= 2 else 16 / columns  # inches a panel
    fig = Figure(figsize=(width * columns, (4.5 if rows <= 2 else 3.5) * rows))  # 4 rows: 1,680 px high
    axes = list(fig.subplots(rows, columns, squeeze=False).flat)
    for ax in axes[groups:]:
        ax.set_visible(False)
    return fig, axes[:groups]


def _save(fig: Figure, axes: list[Axes], path: str) -> list[str]:
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a panel with nothing finished has nothing to label
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return [path]


def plot_error_vs_workers(summary: pd.DataFrame, path: str) -> list[str]:
    """Test error against N per rule, one panel per (model, data set, schedule) of ``summary``
    (``tables.summarize``; the paper's points hollow where it has them)."""
    groups = list(summary.groupby(GROUP, sort=False))
    fig, axes = _figure(len(groups))
    for ax, ((model, dataset, schedule), part) in zip(axes, groups):
        for algorithm, rows in part.groupby("algorithm", sort=False):
            color = _color(algorithm)
            if is_single_worker(algorithm) and rows["mean"].notna().any():  # the reference every N is read against
                ax.axhline(rows["mean"].iloc[0], color=color, linestyle="--", label=f"{algorithm} (N=1)")
                continue
            ax.errorbar(
                rows["num_workers"],
                rows["mean"],
                yerr=rows["std"].fillna(0),
                marker=_marker(algorithm),
                color=color,
                label=algorithm,
                capsize=3,
            )
            if "paper_mean" in rows and rows["paper_mean"].notna().any():
                ax.plot(
                    rows["num_workers"],
                    rows["paper_mean"],
                    marker=_marker(algorithm),
                    markerfacecolor="none",
                    linestyle="--",
                    color=color,
                    label=f"{algorithm} (paper)",
                )
        ax.set(xscale="log", xlabel="workers N", ylabel="test error %", title=f"{model}, {dataset}, {schedule}")
        workers = sorted(part["num_workers"].unique())
        ax.set_xticks(workers, labels=[str(n) for n in workers])
        ax.set_xticks([], minor=True)  # a log axis spanning under a decade labels its minor ticks ("6 x 10^0")
    return _save(fig, axes, path)


def plot_curves(trials: pd.DataFrame, path: str) -> list[str]:
    """Mean test error per epoch of each rule at the largest N, and the baseline's."""
    groups = list(trials.groupby(GROUP, sort=False))
    fig, axes = _figure(len(groups))
    for ax, ((model, dataset, schedule), part) in zip(axes, groups):
        largest = part["num_workers"].max()
        shown = part[(part["num_workers"] == largest) | part["algorithm"].map(is_single_worker)]
        for algorithm, rows in sorted(shown.groupby("algorithm", sort=False), key=lambda g: rule_order(g[0])):
            curves = [c for c in rows["curve"] if c]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            mean = [sum(c[e] for c in curves) / len(curves) for e in range(length)]
            n = rows["num_workers"].iloc[0]
            ax.plot(
                range(1, length + 1),
                mean,
                label=f"{algorithm} (N={n})",
                color=_color(algorithm),
                marker=_marker(algorithm),
                markersize=4,
                linestyle="--" if is_single_worker(algorithm) else "-",
            )
        ax.set(xlabel="epoch", ylabel="test error %", title=f"{model}, {dataset}, {schedule}: N = {largest}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, axes, path)


def plot_delays(trials: pd.DataFrame, path: str) -> list[str]:
    """One panel per rule: the distribution of delays at the largest N, one line per schedule (and model,
    data set, where several), as the fraction of gradients applied with each delay."""
    algorithms = sorted({a for a in trials["algorithm"] if not is_single_worker(a)}, key=rule_order)
    fig, axes = _figure(max(len(algorithms), 1))
    for ax, algorithm in zip(axes, algorithms):
        for k, (group, part) in enumerate(trials[trials["algorithm"] == algorithm].groupby(GROUP, sort=False)):
            largest = part[part["num_workers"] == part["num_workers"].max()]
            histogram = add_histograms(largest["delay_histogram"])
            total = sum(histogram)
            if total:
                label = f"{group[2]}, N={largest['num_workers'].iloc[0]}" + (
                    f" ({group[0]}, {group[1]})" if trials.groupby(GROUP[:2]).ngroups > 1 else ""
                )
                ax.step(
                    range(len(histogram)), [c / total for c in histogram], where="mid", color=f"C{k % 10}", label=label
                )
        ax.set(xlabel="delay (master updates between send and apply)", ylabel="fraction of gradients", title=algorithm)
    return _save(fig, axes, path)


def plot_error_vs_time(trials: pd.DataFrame, timing: pd.DataFrame, path: str) -> list[str]:
    """Mean test error against the mean clock at each epoch's end (``sim_time``; ``wall_time`` under
    ``arrival``) of each rule at the largest N and the baseline's, with the target (``timing``). Nothing is
    written without a time-to-target table."""
    if timing.empty:  # no trial has times (results from before the clock), or no target to measure to
        return []
    done = trials[trials["finished"]]
    groups = [
        (key, part)
        for key, part in done.groupby(GROUP, sort=False)
        if any(t and t[0] == t[0] for t in part[times_column(key[2])])
    ]
    if not groups:
        return []
    fig, axes = _figure(len(groups))
    for ax, ((model, dataset, schedule), part) in zip(axes, groups):
        times_key = times_column(schedule)
        largest = part["num_workers"].max()
        shown = part[(part["num_workers"] == largest) | part["algorithm"].map(is_single_worker)]
        for algorithm, rows in sorted(shown.groupby("algorithm", sort=False), key=lambda g: rule_order(g[0])):
            pairs = [(c, t) for c, t in zip(rows["curve"], rows[times_key]) if c and t]
            if not pairs:
                continue
            length = min(min(len(c), len(t)) for c, t in pairs)
            ax.plot(
                [sum(t[e] for _, t in pairs) / len(pairs) for e in range(length)],
                [sum(c[e] for c, _ in pairs) / len(pairs) for e in range(length)],
                label=f"{algorithm} (N={rows['num_workers'].iloc[0]})",
                color=_color(algorithm),
                linestyle="--" if is_single_worker(algorithm) else "-",
                marker=_marker(algorithm),
                markersize=4,
            )
        target = rows_of_group(timing, (model, dataset, schedule))
        if len(target):
            ax.axhline(target["target"].iloc[0], color="grey", linestyle=":", label="target")
        ax.set(
            xscale="log",
            xlabel=clock_unit(schedule),
            ylabel="test error %",
            title=f"{model}, {dataset}, {schedule}: N = {largest}",
        )
    return _save(fig, axes, path)
