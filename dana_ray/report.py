"""Summarise a Tune experiment into the paper's tables: ``python -m dana_ray.report EXPERIMENT_DIR``.

Reads the experiment directory's files (no Ray cluster needed): each trial's config (``params.json``) and
reported epochs (``result.json``). ``summarize`` is a pure function from a frame of trials to the table:
rows workers x algorithm (per model, data set and schedule), columns mean, std and n over seeds, with the
paper's published mean/std beside them where the paper has that cell (Tables 3-8). A diverged run counts
at chance-level error and flags its cell; a cell with fewer finished runs than the grid has seeds is
flagged ``incomplete``, and one with a trial whose files cannot be read ``broken`` (the report lists each such
folder with the reason, and is made from the rest).

The **shape** view (``shape_table``) reads our results the way the paper's tables should be read on another
model and data set: not the errors, which differ (digits are not CIFAR), but each rule's degradation, its
error minus the baseline's, beside the paper's degradation for the same rule and N, with its sign ("=" when
within one standard deviation of the baseline, else "+" or "-") and its rank among the rules at that N. A
group of ours is compared with its own paper table where there is one, else with the paper's table of the
same schedule (round robin: Table 3, ResNet-20 on CIFAR-10; block random: Table 4).

Writes ``summary.csv``, ``summary.tex``, ``summary.md``, ``shape.csv``, ``delays.csv`` (``delay_table``: the
distribution of delays per cell) and three plots: test error vs workers per algorithm (the paper's points
hollow), test-error curves per epoch at the largest N, and a histogram of delays per rule at the largest N.
"""

from __future__ import annotations

import json
import math
import os
import sys
from importlib import resources

import pandas as pd

from dana_ray.algorithms import ALGORITHMS, is_single_worker
from dana_ray.cli import EXIT_FAILED, OneLineParser, bad_input, one_line
from dana_ray.config import TrialConfig
from dana_ray.grid import AXES, GRID_FILE, GridError, load_grid, parse_trial_folder, trial_from_tune

PAPER_MODEL = {"resnet20": "resnet20", "wrn-16-4": "wrn", "wrn": "wrn"}
GROUP = ["model", "dataset", "schedule"]
FORMATS = ("markdown", "csv", "latex")
DEFAULTS = TrialConfig()  # what a trial config that omits a key means


# -- loading ---------------------------------------------------------------------------------------------------

def load_experiment(path: str) -> pd.DataFrame:
    """One row per trial: its axes, final metrics and per-epoch test errors (``curve``). Where the experiment
    folder holds the grid the sweep ran (``grid.yaml``), every trial it asked for has a row: one that never
    ran or never reported is an unfinished row, so its cell is flagged ``incomplete`` (and a cell none of
    whose trials ran is listed with n = 0). A trial folder whose files cannot be read (an empty or cut
    ``params.json`` after a full disk, an unreadable ``result.json``) is a row with ``broken`` set to the
    reason, its cell taken from the folder's name; ``attrs["broken"]`` lists every such folder, with its
    reason, whether or not its cell could be told. Raises ValueError only when nothing can be read."""
    if not os.path.isdir(path):
        raise ValueError(f"experiment: {path!r} is not a folder")
    rows, broken = [], []
    planned = {(c["algorithm"], c["num_workers"], c["schedule"], c["seed"]): c for c in _grid_trials(path)}
    for folder in sorted(os.listdir(path)):
        trial_dir = os.path.join(path, folder)
        if not _is_trial_folder(trial_dir, folder):
            continue
        try:
            config, results = _read_trial(trial_dir)
        except _Unreadable as error:
            broken.append((trial_dir, str(error)))
            key = parse_trial_folder(folder)
            if key is not None:
                config = dict(planned.get(key, {}), **dict(zip(AXES, key)))
                rows.append(_row(config, trial=folder, broken=str(error)))
            continue
        last = results[-1] if results else {}
        rows.append(_row(config, trial=folder, epochs_done=last.get("epoch", 0),
                         test_error=last.get("test_error", math.nan), diverged=bool(last.get("diverged", False)),
                         finished=is_finished(last, config.get("epochs", DEFAULTS.epochs)),
                         mean_delay=last.get("mean_delay", math.nan), params_sha256=last.get("params_sha256", ""),
                         curve=[r.get("test_error", math.nan) for r in results],
                         delay_histogram=_add_histograms(r.get("delay_histogram") or [] for r in results)))
    found = {(r["algorithm"], r["num_workers"], r["schedule"], r["seed"]) for r in rows}
    for key, config in planned.items():
        if key not in found:
            found.add(key)
            rows.append(_row(config))
    if not rows:
        detail = f"; unreadable: {broken[0][0]} ({broken[0][1]})" if broken else ""
        raise ValueError(f"experiment: no trials under {path!r} (expected Tune trial folders with params.json)"
                         f"{detail}")
    trials = pd.DataFrame(rows)
    trials.attrs["broken"] = broken
    return trials


def is_finished(last: dict, epochs: int) -> bool:
    """Whether a trial whose last report is ``last`` finished: it reported its last epoch, or diverged."""
    return bool(last.get("diverged", False)) or last.get("epoch", 0) >= epochs


class _Unreadable(Exception):
    """A trial folder's file that cannot be read; the message names the file and why."""


def _is_trial_folder(trial_dir: str, name: str) -> bool:
    return os.path.isdir(trial_dir) and (
        os.path.exists(os.path.join(trial_dir, "params.json")) or
        os.path.exists(os.path.join(trial_dir, "result.json")) or parse_trial_folder(name) is not None)


def _read_trial(trial_dir: str) -> tuple[dict, list[dict]]:
    """A trial's config and its reported epochs; raises ``_Unreadable`` naming the file."""
    params_file = os.path.join(trial_dir, "params.json")
    try:
        with open(params_file) as f:
            params = json.load(f)
        config = trial_from_tune(params) if "cell" in params else params
        missing = [axis for axis in AXES if axis not in config]  # every row needs its axes
        if missing:
            raise ValueError(f"no {missing[0]}")
    except FileNotFoundError:
        raise _Unreadable(f"{params_file}: missing") from None
    except (OSError, ValueError, TypeError, KeyError) as error:  # JSONDecodeError and UnicodeDecodeError too
        reason = "empty" if os.path.isfile(params_file) and os.path.getsize(params_file) == 0 else one_line(error)
        raise _Unreadable(f"{params_file}: {reason}") from None
    results_file = os.path.join(trial_dir, "result.json")
    try:
        return config, _read_results(results_file)
    except (OSError, ValueError) as error:
        raise _Unreadable(f"{results_file}: {one_line(error)}") from None


def _row(config: dict, trial: str | None = None, broken: str = "", **reported) -> dict:
    """A trial's row: its config's axes, then what it reported (``reported``; none for a trial that never
    ran or whose files cannot be read)."""
    row = {"trial": trial, "model": config.get("model", DEFAULTS.model),
           "dataset": config.get("dataset", DEFAULTS.dataset), "schedule": config["schedule"],
           "num_workers": config["num_workers"], "algorithm": config["algorithm"], "seed": config["seed"],
           "epochs_planned": config.get("epochs", DEFAULTS.epochs), "epochs_done": 0, "test_error": math.nan,
           "diverged": False, "finished": False, "mean_delay": math.nan, "params_sha256": "", "curve": [],
           "delay_histogram": []}
    return dict(row, **reported, broken=broken)


def results_frame(results: list[dict]) -> pd.DataFrame:
    """Finished runs (``trial.run``'s results) as a trials frame, for ``summarize``: the command line's
    mean/std table is the report's."""
    return pd.DataFrame([_row(r["config"], epochs_done=r["epochs"], test_error=r["test_error"],
                              diverged=r["diverged"], finished=True, mean_delay=r["mean_delay"],
                              params_sha256=r["params_sha256"]) for r in results])


def _grid_trials(path: str) -> list[dict]:
    """The trial configs of the grid stored in the experiment folder ([] without one, or if it cannot be
    read here, e.g. a plug-in this machine lacks: then only the trials found are reported)."""
    stored = os.path.join(path, GRID_FILE)
    if not os.path.isfile(stored):
        return []
    try:
        return load_grid(stored).trials()
    except (GridError, ValueError):
        return []


def _read_results(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    rows = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short when the driver or trial was killed
                continue
            if isinstance(row, dict):
                rows.append(row)
    # A trial restored from a checkpoint reports some epochs again: keep the last report of each epoch.
    by_epoch = {r["epoch"]: r for r in rows if "epoch" in r}
    return [by_epoch[e] for e in sorted(by_epoch)]


def _add_histograms(histograms) -> list[int]:
    total: list[int] = []
    for h in histograms:
        total.extend([0] * (len(h) - len(total)))
        for delay, count in enumerate(h):
            total[delay] += count
    return total


def paper_tables() -> pd.DataFrame:
    with resources.files("dana_ray").joinpath("paper_tables.csv").open() as f:
        return pd.read_csv(f)


def paper_rows() -> dict[str, str]:
    """Our rule name -> its row label in the paper's tables, as each rule declares (``paper_name``)."""
    return {name: rule.paper_name for name, rule in ALGORITHMS.items() if rule.paper_name}


# -- the pure part ---------------------------------------------------------------------------------------------

def summarize(trials: pd.DataFrame, seeds: int | None = None, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean/std/n of the final test error per (model, dataset, schedule, num_workers, algorithm).

    ``seeds``: how many runs a complete cell has (default: the number of distinct seeds in ``trials``).
    Only finished runs (all epochs, or diverged) count; diverged runs count at their chance-level error.
    ``paper`` (columns as ``paper_tables.csv``) adds ``paper_mean``/``paper_std`` where the cell exists.
    """
    seeds = seeds if seeds is not None else trials["seed"].nunique()
    done = trials[trials["finished"]]
    keys = GROUP + ["num_workers", "algorithm"]
    table = (done.groupby(keys, sort=False)
             .agg(mean=("test_error", "mean"), std=("test_error", "std"), n=("test_error", "size"),
                  diverged=("diverged", "sum"))
             .reset_index())
    missing = trials.drop_duplicates(keys)[keys].merge(table[keys], how="left", indicator=True)
    missing = missing[missing["_merge"] == "left_only"].drop(columns="_merge")
    table = pd.concat([table, missing.assign(mean=math.nan, std=math.nan, n=0, diverged=0)], ignore_index=True)
    table["n"] = table["n"].astype(int)
    table["diverged"] = table["diverged"].astype(int)
    broken = trials[trials["broken"].astype(bool)] if "broken" in trials else trials.iloc[:0]
    broken_cells = set(map(tuple, broken[keys].itertuples(index=False)))
    table["flags"] = [", ".join(f for f, on in (("diverged", d > 0), ("incomplete", n < seeds),
                                                ("broken", tuple(key) in broken_cells)) if on)
                      for d, n, key in zip(table["diverged"], table["n"], table[keys].itertuples(index=False))]
    if paper is not None:
        published = paper.assign(
            algorithm=paper["algorithm"].map({v: k for k, v in paper_rows().items()}),
            num_workers=paper["workers"],
        )[["model", "dataset", "schedule", "num_workers", "algorithm", "test_error_mean", "test_error_std", "table"]]
        published = published.rename(columns={"model": "paper_model", "test_error_mean": "paper_mean",
                                              "test_error_std": "paper_std", "table": "paper_table"})
        table["paper_model"] = table["model"].map(PAPER_MODEL)
        table = table.merge(published, how="left", on=["paper_model", "dataset", "schedule", "num_workers", "algorithm"])
        table = table.drop(columns="paper_model")
    table = table.sort_values(GROUP + ["num_workers", "algorithm"],
                              key=lambda c: c.map(_order) if c.name == "algorithm" else c)
    return table.reset_index(drop=True)


def paper_table_for(part: pd.DataFrame, paper: pd.DataFrame, schedule: str) -> int | None:
    """The paper table a group of our results is read against: its own (where the summary found its cells),
    else the first table of the same schedule; None if the paper has no table of that schedule."""
    if "paper_table" in part and part["paper_table"].notna().any():
        return int(part["paper_table"].dropna().iloc[0])
    tables = sorted(paper.loc[paper["schedule"] == schedule, "table"].unique())
    return int(tables[0]) if tables else None


def _sign(delta: float, *stds: float) -> str:
    """"=" when ``delta`` is within the larger of the standard deviations, else its sign."""
    if pd.isna(delta):
        return ""
    tolerance = max([0.0] + [s for s in stds if not pd.isna(s)])
    return "=" if abs(delta) <= tolerance else "+" if delta > 0 else "-"


def shape_table(summary: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Per group, rule and N (``summary``: ``summarize``'s output): our degradation (mean minus our reference
    rule's mean), the paper's for the same rule and N (minus its Baseline row), each one's sign ("=" within
    the larger standard deviation of the cell and of its baseline), whether the signs agree, and each rule's
    rank by degradation at that N among the rules both have (1: least degraded)."""
    rows = []
    rules = paper_rows()
    for (model, dataset, schedule), part in summary.groupby(GROUP, sort=False):
        reference = part[part["algorithm"].map(is_single_worker) & part["mean"].notna()]
        table = paper_table_for(part, paper, schedule)
        if reference.empty or table is None:
            continue
        published = paper[paper["table"] == table]
        paper_base = published[published["algorithm"] == rules.get(reference["algorithm"].iloc[0])]
        if paper_base.empty:
            continue
        base_mean, base_std = reference["mean"].iloc[0], reference["std"].iloc[0]
        for _, row in part[~part["algorithm"].map(is_single_worker)].iterrows():
            cell = published[(published["algorithm"] == rules.get(row["algorithm"]))
                             & (published["workers"] == row["num_workers"])]
            ours = row["mean"] - base_mean
            theirs = cell["test_error_mean"].iloc[0] - paper_base["test_error_mean"].iloc[0] if len(cell) else math.nan
            rows.append({"model": model, "dataset": dataset, "schedule": schedule, "paper_table": table,
                         "num_workers": row["num_workers"], "algorithm": row["algorithm"], "ours": ours,
                         "paper": theirs, "ours_sign": _sign(ours, row["std"], base_std),
                         "paper_sign": _sign(theirs, cell["test_error_std"].iloc[0] if len(cell) else math.nan,
                                             paper_base["test_error_std"].iloc[0])})
    columns = GROUP + ["paper_table", "num_workers", "algorithm", "ours", "paper", "ours_sign", "paper_sign",
                       "signs_agree", "ours_rank", "paper_rank"]
    if not rows:
        return pd.DataFrame(columns=columns)
    shape = pd.DataFrame(rows)
    both = shape["ours"].notna() & shape["paper"].notna()
    shape["signs_agree"] = [bool(a == b) if ok else None
                            for a, b, ok in zip(shape["ours_sign"], shape["paper_sign"], both)]
    keys = GROUP + ["num_workers"]
    for side in ("ours", "paper"):
        shape[f"{side}_rank"] = shape[side].where(both).groupby([shape[k] for k in keys]).rank(method="min")
    return shape[columns]


def delay_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Per (model, dataset, schedule, num_workers, algorithm), over all seeds and epochs: the number of
    gradients applied and their delay's mean, median, 90th/99th percentile and maximum (in parameter
    versions: how many updates the master made between sending a point and applying its gradient)."""
    rows = []
    keys = GROUP + ["num_workers", "algorithm"]
    for key, part in trials.groupby(keys, sort=False):
        histogram = _add_histograms(part["delay_histogram"])
        total = sum(histogram)
        if not total:
            continue
        cumulative, quantiles = 0, {}
        for delay, count in enumerate(histogram):
            cumulative += count
            for q in (0.5, 0.9, 0.99):
                if q not in quantiles and cumulative >= q * total:
                    quantiles[q] = delay
        rows.append(dict(zip(keys, key), gradients=total,
                         mean=sum(d * c for d, c in enumerate(histogram)) / total, p50=quantiles[0.5],
                         p90=quantiles[0.9], p99=quantiles[0.99], max=max(d for d, c in enumerate(histogram) if c)))
    table = pd.DataFrame(rows, columns=keys + ["gradients", "mean", "p50", "p90", "p99", "max"])
    return table.sort_values(keys, key=lambda c: c.map(_order) if c.name == "algorithm" else c).reset_index(drop=True)


# -- output ----------------------------------------------------------------------------------------------------

def _cells(row: pd.Series) -> list[str]:
    fmt = lambda v: "" if pd.isna(v) else f"{v:.2f}"  # noqa: E731
    cells = [str(row["num_workers"]), row["algorithm"], fmt(row["mean"]), fmt(row["std"]), str(row["n"])]
    if "paper_mean" in row:
        cells += [fmt(row["paper_mean"]), fmt(row["paper_std"])]
    return cells + [row["flags"]]


def render(trials: pd.DataFrame, fmt: str = "markdown") -> str:
    """The summary (with the paper's numbers) as markdown, CSV or LaTeX text."""
    if fmt not in FORMATS:
        raise ValueError(f"format: unknown name {fmt!r}; allowed: {', '.join(FORMATS)}")
    paper = paper_tables()
    table = summarize(trials, paper=paper)
    if fmt == "csv":
        return table.to_csv(index=False)
    shape = shape_table(table, paper)
    header = ["workers", "algorithm", "test error %", "std", "n", "paper", "paper std", "flags"]
    blocks = []
    for (model, dataset, schedule), part in table.groupby(GROUP, sort=False):
        rows = [_cells(r) for _, r in part.iterrows()]
        if fmt == "markdown":
            lines = [f"### {model} on {dataset}, {schedule}", "", "| " + " | ".join(header) + " |",
                     "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
        else:
            lines = [f"% {model} on {dataset}, {schedule}", r"\begin{tabular}{rlrrrrrl}", r"\hline",
                     " & ".join(header).replace("%", r"\%") + r" \\", r"\hline"]
            lines += [" & ".join(c.replace("_", r"\_") for c in r) + r" \\" for r in rows]
            lines += [r"\hline", r"\end{tabular}"]
        blocks.append("\n".join(lines))
        ours = shape[(shape["model"] == model) & (shape["dataset"] == dataset) & (shape["schedule"] == schedule)]
        if fmt == "markdown" and len(ours):
            blocks.append(_render_shape(ours))
    unreadable = trials.attrs.get("broken", [])
    if unreadable:
        mark = "%" if fmt == "latex" else "-"
        blocks.append("\n".join([f"{'%' if fmt == 'latex' else '###'} Trials whose files cannot be read (flag "
                                  f"broken; not counted)"] + [f"{mark} {folder}: {reason}" for folder, reason in unreadable]))
    return "\n\n".join(blocks) + "\n"


def _render_shape(shape: pd.DataFrame) -> str:
    """The shape view of one group, as markdown."""
    fmt = lambda v: "" if pd.isna(v) else f"{v:+.2f}"  # noqa: E731
    rank = lambda v: "" if pd.isna(v) else str(int(v))  # noqa: E731
    table = int(shape["paper_table"].iloc[0])
    both = shape[shape["signs_agree"].notna()]
    header = ["workers", "algorithm", "ours - baseline", "paper - baseline", "sign ours / paper", "agree",
              "rank ours / paper"]
    lines = [f"Shape against the paper's Table {table} (degradation from each side's own baseline; sign \"=\": "
             f"within one std of the cell or its baseline): signs agree in {int(both['signs_agree'].sum())} of "
             f"{len(both)} cells", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in shape.iterrows():
        agree = "" if r["signs_agree"] is None or pd.isna(r["signs_agree"]) else "yes" if r["signs_agree"] else "no"
        lines.append(f"| {r['num_workers']} | {r['algorithm']} | {fmt(r['ours'])} | {fmt(r['paper'])} | "
                     f"{r['ours_sign']} / {r['paper_sign']} | {agree} | {rank(r['ours_rank'])} / {rank(r['paper_rank'])} |")
    return "\n".join(lines)


def write_report(trials: pd.DataFrame, out: str) -> list[str]:
    """Write the tables and the two plots into ``out``; returns the files written."""
    os.makedirs(out, exist_ok=True)
    files = []
    for fmt, name in (("csv", "summary.csv"), ("latex", "summary.tex"), ("markdown", "summary.md")):
        path = os.path.join(out, name)
        with open(path, "w") as f:
            f.write(render(trials, fmt))
        files.append(path)
    paper = paper_tables()
    shape = shape_table(summarize(trials, paper=paper), paper)
    if len(shape):
        path = os.path.join(out, "shape.csv")
        shape.to_csv(path, index=False)
        files.append(path)
    files += plot_error_vs_workers(trials, os.path.join(out, "error_vs_workers.png"))
    files += plot_curves(trials, os.path.join(out, "curves_largest_n.png"))
    delays = delay_table(trials)
    if len(delays):
        path = os.path.join(out, "delays.csv")
        delays.to_csv(path, index=False)
        files.append(path)
        files += plot_delays(trials, os.path.join(out, "delays_largest_n.png"))
    return files


def _order(algorithm: str) -> int:
    """A rule's place in the registry (registration order; plug-ins after the built-in rules), unknown last."""
    names = ALGORITHMS.names()
    return names.index(algorithm) if algorithm in names else len(names)


def _color(algorithm: str) -> str:
    """The same colour for an algorithm in every plot."""
    return f"C{_order(algorithm) % 10}"


def _figure(groups: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, groups, figsize=(6 * groups, 4.5), squeeze=False)
    return plt, fig, axes[0]


def _save(plt, fig, axes, path: str) -> list[str]:
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a panel with nothing finished has nothing to label
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def plot_error_vs_workers(trials: pd.DataFrame, path: str) -> list[str]:
    table = summarize(trials, paper=paper_tables())
    groups = list(table.groupby(GROUP, sort=False))
    plt, fig, axes = _figure(len(groups))
    for ax, ((model, dataset, schedule), part) in zip(axes, groups):
        for algorithm, rows in part.groupby("algorithm", sort=False):
            color = _color(algorithm)
            ax.errorbar(rows["num_workers"], rows["mean"], yerr=rows["std"].fillna(0), marker="o", color=color,
                        label=algorithm, capsize=3)
            if "paper_mean" in rows and rows["paper_mean"].notna().any():
                ax.plot(rows["num_workers"], rows["paper_mean"], marker="o", markerfacecolor="none", linestyle="--",
                        color=color, label=f"{algorithm} (paper)")
        ax.set(xscale="log", xlabel="workers N", ylabel="test error %", title=f"{model}, {dataset}, {schedule}")
        ax.set_xticks(sorted(part["num_workers"].unique()), labels=[str(n) for n in sorted(part["num_workers"].unique())])
    return _save(plt, fig, axes, path)


def plot_curves(trials: pd.DataFrame, path: str) -> list[str]:
    groups = list(trials.groupby(GROUP, sort=False))
    plt, fig, axes = _figure(len(groups))
    for ax, ((model, dataset, schedule), part) in zip(axes, groups):
        largest = part["num_workers"].max()
        shown = part[(part["num_workers"] == largest) | part["algorithm"].map(is_single_worker)]
        for algorithm, rows in sorted(shown.groupby("algorithm", sort=False), key=lambda g: _order(g[0])):
            curves = [c for c in rows["curve"] if c]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            mean = [sum(c[e] for c in curves) / len(curves) for e in range(length)]
            n = rows["num_workers"].iloc[0]
            ax.plot(range(1, length + 1), mean, label=f"{algorithm} (N={n})", color=_color(algorithm),
                    linestyle="--" if is_single_worker(algorithm) else "-")
        ax.set(xlabel="epoch", ylabel="test error %", title=f"{model}, {dataset}, {schedule}: N = {largest}")
    return _save(plt, fig, axes, path)


def plot_delays(trials: pd.DataFrame, path: str) -> list[str]:
    """One panel per rule: the distribution of delays at the largest N, one line per schedule (and model,
    data set, where several), as the fraction of gradients applied with each delay."""
    algorithms = sorted({a for a in trials["algorithm"] if not is_single_worker(a)}, key=_order)
    plt, fig, axes = _figure(max(len(algorithms), 1))
    for ax, algorithm in zip(axes, algorithms):
        for k, (group, part) in enumerate(trials[trials["algorithm"] == algorithm].groupby(GROUP, sort=False)):
            largest = part[part["num_workers"] == part["num_workers"].max()]
            histogram = _add_histograms(largest["delay_histogram"])
            total = sum(histogram)
            if total:
                label = f"{group[2]}, N={largest['num_workers'].iloc[0]}" + (
                    f" ({group[0]}, {group[1]})" if trials.groupby(GROUP[:2]).ngroups > 1 else "")
                ax.step(range(len(histogram)), [c / total for c in histogram], where="mid", color=f"C{k % 10}",
                        label=label)
        ax.set(xlabel="delay (master updates between send and apply)", ylabel="fraction of gradients",
               title=algorithm)
    return _save(plt, fig, axes, path)


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m dana_ray.report", description=__doc__.split("\n\n")[0])
    p.add_argument("experiment", help="a Tune experiment directory (what python -m dana_ray.sweep printed)")
    p.add_argument("--format", choices=FORMATS, default="markdown", help="what to print")
    p.add_argument("--out", help="where to write tables and plots (default: EXPERIMENT/report)")
    args = p.parse_args(argv)
    try:
        trials = load_experiment(args.experiment)
    except (OSError, ValueError) as error:
        return bad_input(error)
    print(render(trials, args.format), end="")
    delays = delay_table(trials)
    if len(delays) and args.format == "markdown":
        print("\n### Delays (all seeds and epochs)\n\n| " + " | ".join(delays.columns) + " |\n|"
              + "---|" * len(delays.columns))
        for _, row in delays.iterrows():
            print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row) + " |")
    out = args.out or os.path.join(args.experiment, "report")
    try:
        written = write_report(trials, out)
    except OSError as error:
        print(f"error: cannot write the report into {out}: {one_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
