"""What a sweep costs beyond its trials' work, measured in one run: the same small grid of short trials
through ``python -m dana_ray.sweep`` (its main, in this process) against the same trials run one after
another with the local executor.

    python benchmarks/sweep_overhead.py [--epochs 20] [--seeds 0] [--executor ray local] [--jobs-per-call auto 8 1]
                                        [--json PATH]

The grid is the quickstart's (embedded digits, its hyperparameters and resources: two trials side by side
on the 2 cores) cut to a few cells. Printed: each way's seconds, and its time over the local loop's (goal
for a sweep: at most 1.5); the Ray executor once per ``--jobs-per-call`` value (default: the grid's,
``auto``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks.tables import Record, add_json_option
from dana_ray.experiments.grid import load_grid
from dana_ray.trial import run

RULES = ["baseline", "asgd", "nag-asgd", "dana", "dana-slim"]


def grid_file(folder: str, epochs: int, seeds: list[int], executor: str, jobs_per_call: str | None = None) -> str:
    base = yaml.safe_load(open(load_grid("quickstart").path))
    base["trial"]["epochs"] = epochs
    if jobs_per_call is not None:
        base["trial"]["ray"]["jobs_per_call"] = jobs_per_call if jobs_per_call == "auto" else int(jobs_per_call)
    base["grid"].update(algorithm=RULES, num_workers=[4, 16], seed=seeds)
    base["tune"]["executor"] = executor
    path = os.path.join(folder, f"overhead-{executor}{jobs_per_call or ''}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(base, f)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--executor", nargs="+", default=["ray", "local"], help="the sweep's tune.executor")
    p.add_argument("--jobs-per-call", nargs="+", default=[None], help="the Ray executor's, one sweep each")
    add_json_option(p)
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from dana_ray.sweep import main as sweep

    record = Record("sweep_overhead")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = grid_file(folder, args.epochs, args.seeds, "local")
            trials = load_grid(path).trials()
            record.note(
                f"{len(trials)} trials ({', '.join(RULES)} at N = 4 and 16, seed "
                f"{', '.join(map(str, args.seeds))}), "
                f"{args.epochs} epochs of the quickstart's digits each"
            )
            started = time.perf_counter()
            for config in trials:
                run(config)
            local = time.perf_counter() - started
            rows = [("local executor, one after another", local)]
            for executor, per_call in [
                (e, j) for e in args.executor for j in (args.jobs_per_call if e == "ray" else [None])
            ]:
                path = grid_file(folder, args.epochs, args.seeds, executor, per_call)
                started = time.perf_counter()
                name = f"overhead-{executor}{per_call or ''}"
                if sweep([path, "--storage", folder, "--name", name, "--no-report"]) != 0:
                    raise RuntimeError(f"the sweep of {path} failed")
                took = time.perf_counter() - started
                label = f"python -m dana_ray.sweep, tune.executor {executor}" + (
                    f", jobs_per_call {per_call}" if per_call else ""
                )
                rows.append((label, took))
    finally:
        ray.shutdown()
    table = record.table(  # after the sweeps, which print their own progress
        "the same trials one after another, and through the sweep",
        [("way", "<66"), ("seconds", ".1f"), ("over the local loop", ".2f")],
    )
    for label, seconds in rows:
        table.add(label, seconds, seconds / local)
    record.save(args.json, argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
