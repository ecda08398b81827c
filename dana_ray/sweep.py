"""Run a grid of trials with Ray Tune: ``python -m dana_ray.sweep [CONFIG] [options]``.

CONFIG is a grid file or a name in ``tune_configs/`` (``table3``, ...); without one it runs ``quickstart``
(the embedded digits, every asynchronous rule and the baseline, 1/4/8/16 workers, 3 seeds) and prints the
report. Every trial is validated before anything starts, and every live node of the cluster is checked for
the data directory the trials read (exit code 2, naming the file, field, node and path). With a Ray cluster
running (``ray up``, ``ray job submit``), the sweep joins it; otherwise it starts Ray on this machine.

Each trial is a Tune trial on the Ray executor: a placement group reserves its own process, its
ParameterServer and its Worker actors together, so trials never wait on each other's GPUs halfway. Every
epoch is reported with a checkpoint; a failed trial resumes from it (``tune.max_failures`` in the grid), and
``--resume`` continues an interrupted experiment without redoing finished trials.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from typing import Any

from dana_ray.config import TrialConfig
from dana_ray.grid import Grid, GridError, cell_label, load_grid, parse_cell

DEFAULT_STORAGE = os.path.expanduser("~/ray_results")


def param_space(grid: Grid) -> dict[str, Any]:
    from ray import tune

    return {
        "cell": tune.grid_search([cell_label(a, n) for a, n in grid.cells()]),
        "schedule": tune.grid_search(list(grid.axes["schedule"])),
        "seed": tune.grid_search(list(grid.axes["seed"])),
        "_fixed": grid.trial,
        "_trial_cpus": grid.tune["trial_cpus"],
        "_checkpoint_every": grid.tune["checkpoint_every"],
    }


def trainable():
    from ray import tune

    from dana_ray.trainable import train_trial, trial_resources

    return tune.with_resources(train_trial, trial_resources)


def _trial_name(trial) -> str:
    c = trial.config
    algorithm, workers = parse_cell(c["cell"])
    return f"{algorithm}_N{workers}_{c['schedule']}_s{c['seed']}_{trial.trial_id}"


def make_tuner(grid: Grid, storage: str, name: str, callbacks: list | None = None):
    """The Tuner for ``grid``; ``callbacks`` are Tune callbacks (tests use them to inject faults)."""
    from ray import tune

    return tune.Tuner(
        trainable(),
        param_space=param_space(grid),
        tune_config=tune.TuneConfig(max_concurrent_trials=grid.tune.get("max_concurrent_trials"),
                                    trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(name=name, storage_path=storage,
                                  failure_config=tune.FailureConfig(max_failures=grid.tune["max_failures"]),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1), callbacks=callbacks),
    )


def latest_experiment(storage: str, grid_name: str) -> str | None:
    candidates = [p for p in glob.glob(os.path.join(storage, f"{grid_name}-*")) if os.path.isdir(p)]
    return max(candidates, key=os.path.getmtime) if candidates else None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dana_ray.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("config", nargs="?", default="quickstart", help="grid file or name in tune_configs/")
    p.add_argument("--resume", action="store_true", help="continue an interrupted experiment (--name, or the latest)")
    p.add_argument("--smoke-test", action="store_true", help="one epoch and the first seed of every cell")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help="where experiments are written (shared path or URI on a cluster)")
    p.add_argument("--name", help="experiment name (default: <grid>-<date>-<time>)")
    p.add_argument("--data-dir", help="overrides the grid's trial.data_dir")
    p.add_argument("--skip-data-check", action="store_true",
                   help="do not check that every live node has the data directory before starting")
    p.add_argument("--no-report", action="store_true", help="do not print the report at the end")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        grid = load_grid(args.config, data_dir=args.data_dir, smoke_test=args.smoke_test)
    except GridError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    storage = args.storage if "://" in args.storage else os.path.abspath(os.path.expanduser(args.storage))

    import ray
    from ray import tune

    if not ray.is_initialized():
        ray.init()  # joins RAY_ADDRESS or a cluster on this machine; else starts Ray here
    if not args.skip_data_check:
        from dana_ray.preflight import data_key, missing_data

        configs = [TrialConfig.from_dict(t) for t in grid.trials()]
        problems = missing_data({data_key(c.dataset, c.data_dir, c.dataset_options, c.plugins) for c in configs})
        if problems:
            print("\n".join(f"error: {args.config}: {p}" for p in problems), file=sys.stderr)
            return 2
    if args.resume:
        path = os.path.join(storage, args.name) if args.name else latest_experiment(storage, grid.name)
        if path is None or not tune.Tuner.can_restore(path):
            print(f"error: --resume: no experiment of {grid.name!r} to resume under {storage}", file=sys.stderr)
            return 2
        print(f"resuming {path}")
        tuner = tune.Tuner.restore(path, trainable(), resume_errored=True)
    else:
        name = args.name or f"{grid.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        path = os.path.join(storage, name)
        print(f"{grid.description}: {len(grid.trials())} trials -> {path}")
        tuner = make_tuner(grid, storage, name)
    started = time.perf_counter()
    results = tuner.fit()
    print(f"\n{len(results)} trials in {time.perf_counter() - started:.0f} s; results in {path}")
    if not args.no_report:
        from dana_ray import report

        print(report.render(report.load_experiment(path), fmt="markdown"))
    if results.errors:
        print(f"{len(results.errors)} trials failed; see {path}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
