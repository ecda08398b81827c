"""``python -m dana_ray.report EXPERIMENT_DIR``: summarise a Tune experiment into the paper's tables.

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

import os
import sys

from dana_ray.core.cli import EXIT_FAILED, OneLineParser, bad_input, one_line, show_notes
from dana_ray.report.load import load_experiment
from dana_ray.report.render import FORMATS
from dana_ray.report.report import Report


def main(argv: list[str] | None = None) -> int:
    """Print the report of an experiment folder and write its files; exit 2 if the folder cannot be read."""
    with show_notes():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    p = OneLineParser(prog="python -m dana_ray.report", description=__doc__.split("\n\n")[0])
    p.add_argument("experiment", help="a Tune experiment directory (what python -m dana_ray.sweep printed)")
    p.add_argument("--format", choices=FORMATS, default="markdown", help="what to print")
    p.add_argument("--out", help="where to write tables and plots (default: EXPERIMENT/report)")
    args = p.parse_args(argv)
    try:
        trials = load_experiment(args.experiment)
    except (OSError, ValueError) as error:
        return bad_input(error)
    report = Report(trials)
    print(report.render(args.format), end="")
    finished, planned = int(trials["finished"].sum()), len(trials)
    if finished < planned and args.format != "csv":
        print(
            f"\n{finished} of {planned} trials finished; cells flagged incomplete have fewer finished seeds than "
            f"the grid asks (python -m dana_ray.sweep --resume runs the rest)"
        )
    out = args.out or os.path.join(args.experiment, "report")
    try:
        written = report.write(out)
    except OSError as error:
        print(f"error: cannot write the report into {out}: {one_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    for path in written:
        print(f"wrote {path}")
    return 0
