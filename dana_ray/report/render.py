"""The report as text: the summary in the paper's layout (markdown, CSV, LaTeX), the shape view and the
unreadable trials."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from dana_ray.report.tables import GROUP, rows_of_group
from dana_ray.report.timing import clock_unit

#: The formats the summary's files are written in, and what ``--format`` prints: the compact tables for a
#: terminal (``text``), or one of those.
FILE_FORMATS = ("markdown", "csv", "latex")
FORMATS = ("text", *FILE_FORMATS)


def _cells(row: pd.Series) -> list[str]:
    fmt = lambda v: "" if pd.isna(v) else f"{v:.2f}"
    cells = [str(row["num_workers"]), row["algorithm"], fmt(row["mean"]), fmt(row["std"]), str(row["n"])]
    if "paper_mean" in row:
        cells += [fmt(row["paper_mean"]), fmt(row["paper_std"])]
    return cells + [row["flags"]]


def render_text(
    table: pd.DataFrame, shape: pd.DataFrame, unreadable: list[tuple[str, str]], fmt: str = "markdown"
) -> str:
    """The summary (``tables.summarize`` with the paper's numbers) as markdown, CSV or LaTeX text, each group
    followed by its shape view (markdown) and the trials whose files cannot be read (``unreadable``: folder,
    reason)."""
    if fmt not in FILE_FORMATS:
        raise ValueError(f"format: unknown name {fmt!r}; allowed: {', '.join(FILE_FORMATS)}")
    if fmt == "csv":
        return table.to_csv(index=False)
    header = ["workers", "algorithm", "test error %", "std", "n", "paper", "paper std", "flags"]
    blocks = []
    for (model, dataset, schedule), part in table.groupby(GROUP, sort=False):
        rows = [_cells(r) for _, r in part.iterrows()]
        if fmt == "markdown":
            lines = [
                f"### {model} on {dataset}, {schedule}",
                "",
                "| " + " | ".join(header) + " |",
                "|" + "---|" * len(header),
            ]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
        else:
            lines = [
                f"% {model} on {dataset}, {schedule}",
                r"\begin{tabular}{rlrrrrrl}",
                r"\hline",
                " & ".join(header).replace("%", r"\%") + r" \\",
                r"\hline",
            ]
            lines += [" & ".join(c.replace("_", r"\_") for c in r) + r" \\" for r in rows]
            lines += [r"\hline", r"\end{tabular}"]
        blocks.append("\n".join(lines))
        ours = rows_of_group(shape, (model, dataset, schedule))
        if fmt == "markdown" and len(ours):
            blocks.append(_render_shape(ours))
    if unreadable:
        mark = "%" if fmt == "latex" else "-"
        blocks.append(
            "\n".join(
                [f"{'%' if fmt == 'latex' else '###'} Trials whose files cannot be read (flag broken; not counted)"]
                + [f"{mark} {folder}: {reason}" for folder, reason in unreadable]
            )
        )
    return "\n\n".join(blocks) + "\n"


def _render_shape(shape: pd.DataFrame) -> str:
    """The shape view of one group, as markdown."""
    fmt = lambda v: "" if pd.isna(v) else f"{v:+.2f}"
    rank = lambda v: "" if pd.isna(v) else str(int(v))
    table = int(shape["paper_table"].iloc[0])
    both = shape[shape["signs_agree"].notna()]
    header = [
        "workers",
        "algorithm",
        "ours - baseline",
        "paper - baseline",
        "sign ours / paper",
        "agree",
        "rank ours / paper",
    ]
    lines = [
        f"Shape against the paper's Table {table} (degradation from each side's own baseline; sign \"=\": "
        f"within one std of the cell or its baseline): signs agree in {int(both['signs_agree'].sum())} of "
        f"{len(both)} cells",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for _, r in shape.iterrows():
        agree = "" if r["signs_agree"] is None or pd.isna(r["signs_agree"]) else "yes" if r["signs_agree"] else "no"
        lines.append(
            f"| {r['num_workers']} | {r['algorithm']} | {fmt(r['ours'])} | {fmt(r['paper'])} | "
            f"{r['ours_sign']} / {r['paper_sign']} | {agree} | {rank(r['ours_rank'])} / {rank(r['paper_rank'])} |"
        )
    return "\n".join(lines)


def render_delays(delays: pd.DataFrame) -> str:
    """``tables.delay_table`` as markdown."""
    lines = [
        "### Delays (all seeds and epochs)",
        "",
        "| " + " | ".join(delays.columns) + " |",
        "|" + "---|" * len(delays.columns),
    ]
    for _, row in delays.iterrows():
        lines.append("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


#: How a flagged cell is marked in the compact table, and what the mark means.
MARKS = {"diverged": "†", "incomplete": "*", "broken": "!"}


def render_compact(
    summary: pd.DataFrame, shape: pd.DataFrame, timing: pd.DataFrame, unreadable: list[tuple[str, str]]
) -> str:
    """The report for a terminal, per group in the paper's layout: workers down, rules across, each cell the
    mean ± std test error over seeds (a lone seed: its error alone); the paper's own cells and the shape view
    only where the paper has cells to read them against; the time to target as time (speedup over the
    baseline). The files hold every column (``render_text``, ``render_delays``, ``time_to_target.csv``)."""
    blocks = []
    for key, part in summary.groupby(GROUP, sort=False):
        model, dataset, schedule = key
        blocks.append(f"{model} on {dataset}, {schedule}: test error % (mean ± std over seeds)")
        blocks[-1] += "\n" + _grid(part, lambda r: _mean_std(r["mean"], r["std"]) + _marks(r["flags"]))
        used = {word for flags in part["flags"] for word in MARKS if word in str(flags)}
        if used:
            blocks[-1] += "\n" + "; ".join(f"{MARKS[w]} {w}" for w in MARKS if w in used)
        if "paper_mean" in part and part["paper_mean"].notna().any():
            table = int(part["paper_table"].dropna().iloc[0]) if "paper_table" in part else None
            cells = part[part["paper_mean"].notna()]
            blocks.append(
                f"the paper's Table {table}, the same cells:\n"
                + _grid(cells, lambda r: _mean_std(r["paper_mean"], r["paper_std"]))
            )
        ours = rows_of_group(shape, key)
        both = ours[ours["signs_agree"].notna()] if len(ours) else ours
        if len(both):
            table = int(ours["paper_table"].iloc[0])
            blocks.append(
                f"shape against the paper's Table {table}: each rule's error minus its baseline's, ours / the "
                f"paper's;\nsigns (+, -, or = within one std) agree in {int(both['signs_agree'].sum())} of "
                f"{len(both)} cells (# where they differ)\n"
                + _grid(both, lambda r: f"{r['ours']:+.2f} / {r['paper']:+.2f}" + ("" if r["signs_agree"] else " #"))
            )
        when = rows_of_group(timing, key)
        if len(when):
            target = when["target"].iloc[0]
            blocks.append(
                f"time to test error <= {target:.2f} % in {clock_unit(schedule)} (speedup over the baseline; "
                f"- not reached)\n" + _grid(when, _time_cell)
            )
    if unreadable:
        blocks.append(
            "trials whose files cannot be read (flag broken; not counted):\n"
            + "\n".join(f"  {folder}: {reason}" for folder, reason in unreadable)
        )
    return "\n\n".join(blocks) + "\n"


def _mean_std(mean: float, std: float) -> str:
    if pd.isna(mean):
        return "-"
    return f"{mean:.2f}" if pd.isna(std) else f"{mean:.2f} ± {std:.2f}"


def _marks(flags: object) -> str:
    return "".join(mark for word, mark in MARKS.items() if word in str(flags or ""))


def _time_cell(row: pd.Series) -> str:
    """Time (speedup over the baseline); where only some seeds reached the target, how many, and no speedup."""
    if pd.isna(row["time"]):
        return "-"
    if row["reached"] < row["n"]:
        return f"{row['time']:.1f} ({int(row['reached'])} of {int(row['n'])} seeds)"
    speedup = row["speedup_vs_baseline"]
    return f"{row['time']:.1f}" + ("" if pd.isna(speedup) else f" ({speedup:.2f}x)")


def _grid(part: pd.DataFrame, cell: Callable[[pd.Series], str]) -> str:
    """Rows ``num_workers``, columns ``algorithm`` (in the order they come), ``cell(row)`` in each, aligned."""
    rules = list(dict.fromkeys(part["algorithm"]))
    counts = list(dict.fromkeys(part["num_workers"]))
    cells = {(r["num_workers"], r["algorithm"]): cell(r) for _, r in part.iterrows()}
    rows = [["N", *rules]] + [[str(n), *(cells.get((n, a), "") for a in rules)] for n in counts]
    widths = [max(len(row[k]) for row in rows) for k in range(len(rules) + 1)]
    return "\n".join(
        "  ".join(text.rjust(w) if k == 0 else text.ljust(w) for k, (text, w) in enumerate(zip(row, widths))).rstrip()
        for row in rows
    )
