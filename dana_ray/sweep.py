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
import tempfile
import time
from typing import Any

import yaml

from dana_ray.cli import OneLineParser, bad_input
from dana_ray.config import TrialConfig
from dana_ray.grid import GRID_EXECUTORS, GRID_FILE, Grid, GridError, cell_label, load_grid, parse_cell

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
        "_executor": grid.tune["executor"],
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
    """The Tuner for ``grid``, which is written into the experiment folder (``GRID_FILE``: what ``--resume``
    and the report hold the experiment to); ``callbacks`` are Tune callbacks (tests use them to inject faults)."""
    from ray import tune

    if "://" not in storage:
        os.makedirs(os.path.join(storage, name), exist_ok=True)
        grid.to_file(os.path.join(storage, name, GRID_FILE))

    return tune.Tuner(
        trainable(),
        param_space=param_space(grid),
        tune_config=tune.TuneConfig(max_concurrent_trials=grid.tune.get("max_concurrent_trials"), reuse_actors=True,
                                    trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(name=name, storage_path=storage,
                                  failure_config=tune.FailureConfig(max_failures=grid.tune["max_failures"]),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1), callbacks=callbacks),
    )


def latest_experiment(storage: str, grid_name: str) -> str | None:
    candidates = [p for p in glob.glob(os.path.join(storage, f"{grid_name}-*")) if os.path.isdir(p)]
    return max(candidates, key=os.path.getmtime) if candidates else None


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m dana_ray.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("config", nargs="?", default=None,
                   help="grid file or name in tune_configs/ (default: quickstart; with --resume: the grid the "
                        "experiment ran)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted experiment (--name, or the latest)")
    p.add_argument("--smoke-test", action="store_true", help="one epoch and the first seed of every cell")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help="where experiments are written (shared path or URI on a cluster)")
    p.add_argument("--name", help="experiment name (default: <grid>-<date>-<time>)")
    p.add_argument("--data-dir", help="overrides the grid's trial.data_dir")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=_key_value,
                   help="set a trial key over the grid's (a YAML value), e.g. --set gpus_per_actor=0; repeatable")
    p.add_argument("--only", action="append", default=[], metavar="AXIS=V1,V2", type=_key_value,
                   help="run only these values of an axis, e.g. --only num_workers=4,8; repeatable")
    p.add_argument("--executor", choices=GRID_EXECUTORS,
                   help="how each trial runs (overrides tune.executor): ray (ParameterServer and Worker actors) or "
                        "local (the whole simulation in the trial's process)")
    p.add_argument("--skip-data-check", action="store_true",
                   help="do not check that every live node can read the data before starting")
    p.add_argument("--no-report", action="store_true", help="do not print the report at the end")
    return p


def _key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as YAML (``0.5``, ``[2, 4]``, ``{image_size: 64}``, ``cpu``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"{key}: {value!r} is not a YAML value") from None


def _grid_options(args: argparse.Namespace) -> dict[str, Any]:
    """What the command line changes in the grid: ``load_grid``'s keyword arguments."""
    only = {}
    for axis, values in args.only:  # "4,8" reads as one string; "4" as a number; "[4, 8]" as a list
        if isinstance(values, str):
            values = [yaml.safe_load(v) for v in values.split(",")]
        only[axis] = values if isinstance(values, list) else [values]
    return {"data_dir": args.data_dir, "smoke_test": args.smoke_test, "overrides": dict(args.set), "only": only}


def check_storage(storage: str) -> None:
    """Refuse a local ``--storage`` this process cannot write to (a URI is the cloud's business)."""
    if "://" in storage:
        return
    existing = storage
    while not os.path.exists(existing):  # the folder is made later, by the sweep
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise GridError(f"--storage: cannot write to {storage!r} ({existing!r}: not a folder)")
    try:  # a real write, not os.access: root passes access() on read-only file systems and /proc
        os.rmdir(tempfile.mkdtemp(prefix=".dana_ray-write-check-", dir=existing))
    except OSError as error:
        raise GridError(f"--storage: cannot write to {storage!r} ({existing!r}: {error.strerror})") from None


def _resumed_grid(args: argparse.Namespace, storage: str) -> tuple[Grid, str]:
    """The grid an experiment ran and its folder; refuses a different grid than it ran."""
    name = args.name or (load_grid(args.config).name if args.config else "quickstart")
    path = os.path.join(storage, args.name) if args.name else latest_experiment(storage, name)
    stored = os.path.join(path, GRID_FILE) if path else None
    from ray import tune

    if stored is None or not os.path.isfile(stored) or not tune.Tuner.can_restore(path):
        raise GridError(f"--resume: no experiment {'named ' + repr(args.name) if args.name else 'of ' + repr(name)} "
                        f"to resume under {storage}")
    ran = load_grid(stored, data_dir=args.data_dir)
    if args.config:
        asked = load_grid(args.config, **_grid_options(args))
        change = asked.changes_from(ran)
        if change:
            raise GridError(f"--resume: the grid differs from the one {path} ran ({change}); resume it with its own "
                            f"grid (omit CONFIG), or start a new experiment with another --name")
    return ran, path


def main(argv: list[str] | None = None) -> int:
    """Bad input (grid, options, storage, data on a node): one line on stderr, exit 2, nothing launched.
    Trials that fail: the report of the rest, one line on stderr, exit 1."""
    args = _parser().parse_args(argv)
    storage = args.storage if "://" in args.storage else os.path.abspath(os.path.expanduser(args.storage))
    try:
        if args.resume:
            grid, path = _resumed_grid(args, storage)
        else:
            grid = load_grid(args.config or "quickstart", **_grid_options(args))
            if args.executor:
                grid.tune["executor"] = args.executor
            path = os.path.join(storage, args.name or f"{grid.name}-{time.strftime('%Y%m%d-%H%M%S')}")
            if os.path.exists(os.path.join(path, GRID_FILE)):
                raise GridError(f"--name: {path} holds an experiment already; --resume it, or choose another --name")
        check_storage(storage)
    except GridError as error:
        return bad_input(error)

    import ray
    from ray import tune

    if not ray.is_initialized():
        ray.init()  # joins RAY_ADDRESS or a cluster on this machine; else starts Ray here
    if not args.skip_data_check:
        from dana_ray.preflight import data_key, missing_data

        configs = [TrialConfig.from_dict(t) for t in grid.trials()]
        problems = missing_data({data_key(c.dataset, c.data_dir, c.dataset_options, c.plugins) for c in configs})
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            return bad_input(f"{grid.path}: {problems[0]}{more}")
    if args.resume:
        print(f"resuming {path}")
        tuner = tune.Tuner.restore(path, trainable(), resume_errored=True)
    else:
        print(f"{grid.description}: {len(grid.trials())} trials -> {path}")
        tuner = make_tuner(grid, storage, os.path.basename(path))
    started = time.perf_counter()
    results = tuner.fit()
    print(f"\n{len(results)} trials in {time.perf_counter() - started:.0f} s; results in {path}")
    if not args.no_report:
        from dana_ray import report

        print(report.render(report.load_experiment(path), fmt="markdown"))
    if results.errors:
        print(f"error: {len(results.errors)} trials failed; see {path}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
