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

The **time to target** (``report/timing.py``): per cell, the simulated time (``sim_time``; ``wall_time`` under
``arrival``) and epochs at which the test error first reaches a target (the baseline's final mean +
``--tolerance``, or ``--target-error``), mean and std over seeds, and the speedup against the baseline and
against SSGD at the same N.

Writes ``summary.csv``, ``summary.tex``, ``summary.md``, ``shape.csv``, ``delays.csv`` (``delay_table``: the
distribution of delays per cell), ``time_to_target.csv`` and four plots: test error vs workers per algorithm
(the paper's points hollow), test-error curves per epoch at the largest N, a histogram of delays per rule at
the largest N, and test error against simulated time at the largest N.
"""

from __future__ import annotations

import os
import sys

from dana_ray.core.cli import EXIT_FAILED, OneLineParser, bad_input, one_line, plain, show_notes
from dana_ray.report.load import load_experiment
from dana_ray.report.render import FORMATS
from dana_ray.report.report import Report
from dana_ray.report.timing import TOLERANCE


def main(argv: list[str] | None = None) -> int:
    """Print the report of an experiment folder and write its files; exit 2 if the folder cannot be read."""
    with show_notes():
        return _main(argv)


def _parser() -> OneLineParser:
    p = OneLineParser(prog="python -m dana_ray.report", description=plain(__doc__.split("\n\n")[0]))
    p.add_argument("experiment", help="a Tune experiment directory (what python -m dana_ray.sweep printed)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="what to print on stdout: text, compact tables in the paper's layout; or the full summary as markdown, "
        "csv or latex (the files are written in every format whatever it says)",
    )
    p.add_argument("--out", help="where to write tables and plots (default: EXPERIMENT/report)")
    p.add_argument(
        "--target-error",
        type=float,
        help="the test error (%%) time to target is measured to (default: each group's baseline's final mean "
        "+ --tolerance)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=TOLERANCE,
        help=f"percentage points above the baseline's final mean error that reach the target (default {TOLERANCE:g})",
    )
    return p


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    try:
        trials = load_experiment(args.experiment)
    except (OSError, ValueError) as error:
        return bad_input(error)
    report = Report(trials, args.target_error, args.tolerance)
    print(report.render(args.format), end="")  # standard output holds the table alone: notices go to stderr
    finished, planned = int(trials["finished"].sum()), len(trials)
    if finished < planned:
        print(
            f"\n{finished} of {planned} trials finished; cells flagged incomplete have fewer finished seeds than "
            f"the grid asks (python -m dana_ray.sweep --resume runs the rest)",
            file=sys.stderr,
        )
    out = args.out or os.path.join(args.experiment, "report")
    try:
        written = report.write(out)
    except OSError as error:
        print(f"error: cannot write the report into {out}: {one_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0
