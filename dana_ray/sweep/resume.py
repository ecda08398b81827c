"""What a ``--resume`` may change, and how the change reaches the experiment's trials.

A resumed experiment trains what it was started with: its grid, axes and what each trial trains are fixed.
Where and how its trials run may change (``experiments.grid.RESUMABLE``: the data's location, the actors
and server processes and their reservations, the server shards, settings that change no number): given with
``--set``, ``--data-dir`` or an edited grid file, they are applied; anything else is refused in one line
naming the key and why, and so are ``--only``, ``--smoke-test`` and ``--executor``, which would change which
trials run or how they are reserved. Nothing given is ignored.

Tune restores a run's trials with the configs and reservations they were created with, so the changes reach
them two ways: the trainable passed to ``Tuner.restore`` carries them (``sweep.tuner.tune_trainable``) and
applies them to every trial config it is given, and to the reservation of every trial created after the
restore; ``ResumeChanges``, a callback in every sweep's run, gives the trials restored from the saved state
their new reservation before any of them starts (``Trial.update_resources``, Tune's own way to change a
trial's resources while it is not running).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
from collections.abc import Iterator
from typing import Any

from ray import tune

from dana_ray.config import TrialConfig, section_of, set_options
from dana_ray.experiments.grid import RESUMABLE, Grid, GridError

#: The changes of the run this process resumes (``in_force``, around the run; read by ``ResumeChanges``,
#: which Tune unpickles with the run and calls in this process).
_changes: dict[str, Any] = {}


def refuse_selections(args: argparse.Namespace) -> None:
    """Refuse the flags that would change which trials a resumed experiment runs, in one line."""
    for flag, given in (("--only", args.only), ("--smoke-test", args.smoke_test), ("--executor", args.executor)):
        if given:
            raise GridError(
                f"--resume: {flag} would change which trials the experiment runs or how they are reserved; a "
                f"resumed experiment runs the trials it was started with (start a new one with another --name)"
            )


def changes_asked(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--set`` and ``--data-dir`` of a ``--resume``, by name, each among ``RESUMABLE`` (else refused in
    one line naming the key and what may change)."""
    changes: dict[str, Any] = {}
    for key, value in args.set:
        name = key.split(".", 1)[1] if "." in key else key
        if name not in RESUMABLE:
            what = "a section option" if section_of(name) is not None else "a config field"
            raise GridError(
                f"--set {key}: {what} that changes what the experiment trains; a resumed experiment may change "
                f"only where and how it runs ({', '.join(RESUMABLE)}); start a new one with another --name"
            )
        changes[name] = value
    if args.data_dir is not None:
        changes["data_dir"] = args.data_dir
    return changes


def resumed(ran: Grid, changes: dict[str, Any]) -> Grid:
    """The grid an experiment ran with ``changes`` (``RESUMABLE`` settings by name) set, every trial checked."""
    grid = ran.with_resumable(changes)
    try:
        grid.checked = [TrialConfig.from_dict(config) for config in grid.trials()]
    except ValueError as error:
        raise GridError(f"--resume: {error}") from None
    return grid


def apply(fixed: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A trial's fixed keys (a Tune config's ``_fixed``) with the changes set (a new dict)."""
    out = copy.deepcopy(fixed)
    if "data_dir" in changes:
        out["data_dir"] = changes["data_dir"]
    set_options(out, {k: v for k, v in changes.items() if k != "data_dir"})
    return out


def with_changes(config: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A Tune config with the changes applied to its fixed keys."""
    return dict(config, _fixed=apply(config["_fixed"], changes)) if changes else config


@contextlib.contextmanager
def in_force(changes: dict[str, Any]) -> Iterator[None]:
    """While in it, ``changes`` are those of the run this process resumes (``ResumeChanges`` applies them);
    outside, none: a later run in the same process (a notebook, the tests) is not changed."""
    _changes.clear()
    _changes.update(changes)
    try:
        yield
    finally:
        _changes.clear()


class ResumeChanges(tune.Callback):
    """Before the trials of a resumed run start, gives those Tune restored from the saved state (with the
    configs and reservations they were created with) the changes the resume asked for."""

    def __init__(self) -> None:
        self._done: set[str] = set()

    def setup(
        self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None, **info: Any
    ) -> None:
        self._done = set()

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if not _changes:
            return
        from dana_ray.sweep.trainable import trial_resources

        for trial in trials:
            if trial.trial_id in self._done or trial.status in ("RUNNING", "TERMINATED"):
                continue
            trial.config = with_changes(trial.config, _changes)
            trial.update_resources(trial_resources(trial.config))
            self._done.add(trial.trial_id)
