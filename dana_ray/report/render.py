"""The report as text: the summary in the paper's layout (markdown, CSV, LaTeX), the shape view and the
unreadable trials."""

from __future__ import annotations

import pandas as pd

from dana_ray.report.tables import GROUP

FORMATS = ("markdown", "csv", "latex")


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
    if fmt not in FORMATS:
        raise ValueError(f"format: unknown name {fmt!r}; allowed: {', '.join(FORMATS)}")
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
        ours = shape[(shape["model"] == model) & (shape["dataset"] == dataset) & (shape["schedule"] == schedule)]
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
