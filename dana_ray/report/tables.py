"""The report's tables, pure functions of a frame of trials (``load.load_experiment``, or ``results_frame`` of
``dana_ray.run`` results) and the paper's table.

* ``summarize``: mean/std/n of the final test error per (model, dataset, schedule, N, rule), flagged
  ``diverged``, ``incomplete`` (fewer finished runs than the grid has seeds) or ``broken`` (a trial whose
  files cannot be read), with the paper's mean/std beside it where the paper has that cell;
* ``shape_table``: each rule's degradation from its own baseline beside the paper's, with signs and ranks
  (how the paper's tables should be read on another model and data set);
* ``delay_table``: the distribution of delays per cell.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from dana_ray.algorithms import ALGORITHMS, is_single_worker
from dana_ray.report.paper import PAPER_MODEL, paper_rows

GROUP = ["model", "dataset", "schedule"]


def rows_of_group(frame: pd.DataFrame, key: tuple) -> pd.DataFrame:
    """The rows of ``frame`` in the group ``key`` (model, dataset, schedule); an empty frame stays as it is."""
    if frame.empty:
        return frame
    return frame[(frame[GROUP] == pd.Series(key, index=GROUP)).all(axis=1)]


def rule_order(algorithm: str) -> int:
    """A rule's place in the registry (registration order; plug-ins after the built-in rules), unknown last."""
    names = ALGORITHMS.names()
    return names.index(algorithm) if algorithm in names else len(names)


def add_histograms(histograms: Iterable[list[int]]) -> list[int]:
    """The sum of delay histograms (``h[d]``: gradients applied with delay d) of any lengths."""
    total: list[int] = []
    for h in histograms:
        total.extend([0] * (len(h) - len(total)))
        for delay, count in enumerate(h):
            total[delay] += count
    return total


def summarize(trials: pd.DataFrame, seeds: int | None = None, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean/std/n of the final test error per (model, dataset, schedule, num_workers, algorithm).

    ``seeds``: how many runs a complete cell has (default: the number of distinct seeds in ``trials``).
    Only finished runs (all epochs, or diverged) count; diverged runs count at their chance-level error.
    ``paper`` (columns as ``paper_tables.csv``) adds ``paper_mean``/``paper_std`` where the cell exists.
    """
    seeds = seeds if seeds is not None else trials["seed"].nunique()
    done = trials[trials["finished"]]
    keys = GROUP + ["num_workers", "algorithm"]
    table = (
        done.groupby(keys, sort=False)
        .agg(
            mean=("test_error", "mean"),
            std=("test_error", "std"),
            n=("test_error", "size"),
            diverged=("diverged", "sum"),
        )
        .reset_index()
    )
    missing = trials.drop_duplicates(keys)[keys].merge(table[keys], how="left", indicator=True)
    missing = missing[missing["_merge"] == "left_only"].drop(columns="_merge")
    table = pd.concat([table, missing.assign(mean=math.nan, std=math.nan, n=0, diverged=0)], ignore_index=True)
    table["n"] = table["n"].astype(int)
    table["diverged"] = table["diverged"].astype(int)
    broken = trials[trials["broken"].astype(bool)] if "broken" in trials else trials.iloc[:0]
    broken_cells = set(map(tuple, broken[keys].itertuples(index=False)))
    table["flags"] = [
        ", ".join(
            f
            for f, on in (("diverged", d > 0), ("incomplete", n < seeds), ("broken", tuple(key) in broken_cells))
            if on
        )
        for d, n, key in zip(table["diverged"], table["n"], table[keys].itertuples(index=False))
    ]
    if paper is not None:
        published = paper.assign(
            algorithm=paper["algorithm"].map({v: k for k, v in paper_rows().items()}),
            num_workers=paper["workers"],
        )[["model", "dataset", "schedule", "num_workers", "algorithm", "test_error_mean", "test_error_std", "table"]]
        published = published.rename(
            columns={
                "model": "paper_model",
                "test_error_mean": "paper_mean",
                "test_error_std": "paper_std",
                "table": "paper_table",
            }
        )
        table["paper_model"] = table["model"].map(PAPER_MODEL)
        table = table.merge(
            published, how="left", on=["paper_model", "dataset", "schedule", "num_workers", "algorithm"]
        )
        table = table.drop(columns="paper_model")
    table = table.sort_values(
        GROUP + ["num_workers", "algorithm"], key=lambda c: c.map(rule_order) if c.name == "algorithm" else c
    )
    return table.reset_index(drop=True)


def paper_table_for(part: pd.DataFrame, paper: pd.DataFrame, schedule: str) -> int | None:
    """The paper table a group of our results is read against: its own (where the summary found its cells),
    else the first table of the same schedule; None if the paper has no table of that schedule."""
    if "paper_table" in part and part["paper_table"].notna().any():
        return int(part["paper_table"].dropna().iloc[0])
    tables = sorted(paper.loc[paper["schedule"] == schedule, "table"].unique())
    return int(tables[0]) if tables else None


def _sign(delta: float, *stds: float) -> str:
    """ "=" when ``delta`` is within the larger of the standard deviations, else its sign."""
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
            cell = published[
                (published["algorithm"] == rules.get(row["algorithm"])) & (published["workers"] == row["num_workers"])
            ]
            ours = row["mean"] - base_mean
            theirs = cell["test_error_mean"].iloc[0] - paper_base["test_error_mean"].iloc[0] if len(cell) else math.nan
            rows.append(
                {
                    "model": model,
                    "dataset": dataset,
                    "schedule": schedule,
                    "paper_table": table,
                    "num_workers": row["num_workers"],
                    "algorithm": row["algorithm"],
                    "ours": ours,
                    "paper": theirs,
                    "ours_sign": _sign(ours, row["std"], base_std),
                    "paper_sign": _sign(
                        theirs,
                        cell["test_error_std"].iloc[0] if len(cell) else math.nan,
                        paper_base["test_error_std"].iloc[0],
                    ),
                }
            )
    columns = GROUP + [
        "paper_table",
        "num_workers",
        "algorithm",
        "ours",
        "paper",
        "ours_sign",
        "paper_sign",
        "signs_agree",
        "ours_rank",
        "paper_rank",
    ]
    if not rows:
        return pd.DataFrame(columns=columns)
    shape = pd.DataFrame(rows)
    both = shape["ours"].notna() & shape["paper"].notna()
    shape["signs_agree"] = [
        bool(a == b) if ok else None for a, b, ok in zip(shape["ours_sign"], shape["paper_sign"], both)
    ]
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
        histogram = add_histograms(part["delay_histogram"])
        total = sum(histogram)
        if not total:
            continue
        cumulative, quantiles = 0, {}
        for delay, count in enumerate(histogram):
            cumulative += count
            for q in (0.5, 0.9, 0.99):
                if q not in quantiles and cumulative >= q * total:
                    quantiles[q] = delay
        rows.append(
            dict(
                zip(keys, key),
                gradients=total,
                mean=sum(d * c for d, c in enumerate(histogram)) / total,
                p50=quantiles[0.5],
                p90=quantiles[0.9],
                p99=quantiles[0.99],
                max=max(d for d, c in enumerate(histogram) if c),
            )
        )
    table = pd.DataFrame(rows, columns=keys + ["gradients", "mean", "p50", "p90", "p99", "max"])
    return table.sort_values(keys, key=lambda c: c.map(rule_order) if c.name == "algorithm" else c).reset_index(
        drop=True
    )
