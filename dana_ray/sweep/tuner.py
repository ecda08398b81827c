"""The Tune side of a sweep: a grid as Tune's param space, the trainable with its reservation, the Tuner.

A sweep's param space has three grid-searched keys, ``cell`` ("dana N=16"), ``schedule`` and ``seed``, and
the grid's fixed keys in ``_fixed`` (``experiments.grid.trial_from_tune`` turns a Tune config back into the
trial config); each trial's folder is named after its cell (``experiments.grid.trial_folder``).
"""

from __future__ import annotations

import glob
import os
from typing import Any

from dana_ray.experiments.folder import GRID_FILE, cell_label, trial_folder
from dana_ray.experiments.grid import Grid


def param_space(grid: Grid) -> dict[str, Any]:
    from ray import tune

    return {
        "cell": tune.grid_search([cell_label(a, n) for a, n in grid.cells()]),
        "schedule": tune.grid_search(list(grid.axes["schedule"])),
        "seed": tune.grid_search(list(grid.axes["seed"])),
        "_fixed": grid.trial,
        "_per": grid.per,
        "_trial_cpus": grid.tune["trial_cpus"],
        "_checkpoint_every": grid.tune["checkpoint_every"],
        "_executor": grid.tune["executor"],
    }


def tune_trainable(changes: dict[str, Any] | None = None) -> Any:
    """The trainable with its reservation, as Tune runs it; ``changes``: what a ``--resume`` changes (see
    ``sweep/resume.py``), applied to every trial config it is given (the closure travels to the trials)."""
    from ray import tune

    from dana_ray.sweep.resume import with_changes
    from dana_ray.sweep.trainable import train_trial, trial_resources

    if not changes:
        return tune.with_resources(train_trial, trial_resources)
    fixed = dict(changes)

    def changed_trial(config: dict[str, Any]) -> None:
        train_trial(with_changes(config, fixed))

    changed_trial.__name__ = changed_trial.__qualname__ = train_trial.__name__  # Tune restores by this name
    return tune.with_resources(changed_trial, lambda config: trial_resources(with_changes(config, fixed)))


def _trial_name(trial) -> str:
    return trial_folder(trial.config, trial.trial_id)


def make_tuner(grid: Grid, storage: str, name: str, callbacks: list | None = None, verbose: bool = False):
    """The Tuner for ``grid``, which is written into the experiment folder (``GRID_FILE``: what ``--resume``
    and the report hold the experiment to); ``callbacks`` are Tune callbacks (tests use them to inject faults),
    after the ``StopWatch`` that tells an interrupted run from a finished one; the console is the
    ``SweepConsole``'s status, or with ``verbose`` Tune's own output."""
    from ray import tune

    from dana_ray.sweep.checkpoints import CheckpointNotes, OneTry
    from dana_ray.sweep.console import SweepConsole
    from dana_ray.sweep.interrupt import StopWatch
    from dana_ray.sweep.resume import ResumeChanges

    if "://" not in storage:
        os.makedirs(os.path.join(storage, name), exist_ok=True)
        grid.to_file(os.path.join(storage, name, GRID_FILE))

    return tune.Tuner(
        tune_trainable(),
        param_space=param_space(grid),
        tune_config=tune.TuneConfig(
            max_concurrent_trials=grid.tune.get("max_concurrent_trials"),
            reuse_actors=True,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=grid.tune["max_failures"]),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[
                StopWatch(),
                CheckpointNotes(),
                OneTry(),  # before Tune's loggers, which Tune puts last
                ResumeChanges(),
                *(callbacks or []),
                *([] if verbose else [SweepConsole(len(grid.trials()))]),
            ],
            verbose=None if verbose else 0,
        ),
    )


def latest_experiment(storage: str, grid_name: str) -> str | None:
    candidates = [p for p in glob.glob(os.path.join(storage, f"{grid_name}-*")) if os.path.isdir(p)]
    return max(candidates, key=os.path.getmtime) if candidates else None
