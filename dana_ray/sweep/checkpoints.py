"""A trial's checkpoints on disk, and what happens when one cannot be read.

Tune keeps one checkpoint per trial (``num_to_keep=1``); the trial's whole state is one file in it
(``STATE_FILE``). Before each new checkpoint is reported, the current one's state file is kept beside the
trial's checkpoints (``PREVIOUS_FILE``, a copy: damage to the latest file in place leaves it whole), so
that a trial whose latest checkpoint cannot be read resumes from the one before, or else from its
beginning, with a one-line note that the sweep's driver prints (``CheckpointNotes``). A trial that goes
back (to the one before, to its beginning) has its history cut to the try it goes on with (``OneTry``).
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

import torch
from ray import tune

from dana_ray.core.cli import one_line
from dana_ray.experiments.folder import cut_history, reported_epochs

log = logging.getLogger(__name__)

STATE_FILE = "trial_state.pt"
#: Beside a trial's checkpoints (local storage), the state of the checkpoint before the latest: Tune keeps one
#: checkpoint (``num_to_keep=1``), so before each new one is reported the current one's state file is copied
#: here (a file of its own, not a link: a file damaged in place must not take its fallback with it), to resume
#: from when the latest cannot be read.
PREVIOUS_FILE = "previous_trial_state.pt"


def keep_previous(checkpoint: tune.Checkpoint | None) -> None:
    """Copy ``checkpoint``'s state file (local storage) to ``PREVIOUS_FILE`` in its trial folder, whole or not
    at all (a copy beside it, then renamed over the old one)."""
    if checkpoint is None or not _is_local(checkpoint):
        return
    source = os.path.join(checkpoint.path, STATE_FILE)
    target = os.path.join(os.path.dirname(os.path.normpath(checkpoint.path)), PREVIOUS_FILE)
    staging = target + ".tmp"
    try:
        if os.path.exists(staging):
            os.remove(staging)
        shutil.copyfile(source, staging)
        os.replace(staging, target)
    except OSError as error:  # a missing fallback must not fail the trial
        log.warning("could not keep %s as the previous checkpoint (%s)", source, error)


def readable_state(checkpoint: tune.Checkpoint) -> tuple[dict | None, str | None]:
    """The trial state to resume from, and a one-line note when it is not the latest checkpoint's.

    The latest checkpoint is loaded and checked (a dict with the epoch, the history and the master's state);
    if it cannot be read (truncated, overwritten, missing), the state of the checkpoint before it
    (``PREVIOUS_FILE``, local storage) is tried, and failing that the trial starts again from its beginning
    (None). A checkpoint that failed is never handed on to be retried."""
    failed: list[str] = []
    for source in _candidates(checkpoint):
        file = source if isinstance(source, str) else os.path.join(checkpoint.path, STATE_FILE)
        try:
            state = _load_state(source)
        except Exception as error:
            failed.append(f"{file} ({type(error).__name__}: {one_line(error)[:160]})")
            continue
        if not failed:
            return state, None
        return state, (f"checkpoint {failed[0]} cannot be read; resumed from {file} (epoch {state['epoch']})")
    return None, (
        f"checkpoint {failed[0]} cannot be read and no earlier one can; the trial starts again from its beginning"
    )


def _is_local(checkpoint: tune.Checkpoint) -> bool:
    import pyarrow.fs

    return isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem)


def _candidates(checkpoint: tune.Checkpoint) -> list:
    """The latest checkpoint's state file, then the previous one's (local storage: files; other storage:
    the latest ``tune.Checkpoint`` alone)."""
    if not _is_local(checkpoint):
        return [checkpoint]
    latest = os.path.normpath(checkpoint.path)
    previous = os.path.join(os.path.dirname(latest), PREVIOUS_FILE)
    return [os.path.join(latest, STATE_FILE)] + ([previous] if os.path.exists(previous) else [])


def _load_state(source: str | tune.Checkpoint) -> dict:
    if isinstance(source, str):
        state = torch.load(source, map_location="cpu", weights_only=False)
    else:
        with source.as_directory() as local:
            state = torch.load(os.path.join(local, STATE_FILE), map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or not {"epoch", "history", "master"} <= set(state):
        raise ValueError("not a trial state (expected epoch, history and master)")
    return state


class CheckpointNotes(tune.Callback):
    """Prints, on the driver, the note a trial reports when it could not resume from its latest checkpoint
    (actors' own output stays in their trial folders)."""

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get("checkpoint_note"):
            log.warning("%s: %s", trial, result["checkpoint_note"])


class OneTry(tune.Callback):
    """Keeps each trial's history (``result.json``, ``progress.csv``) to one try, numbered 1..E.

    A trial that goes back (restarted from the checkpoint before its latest, or from its beginning, or from
    a checkpoint older than its last report) reports an epoch it has reported before; before Tune's loggers
    (which come after the sweep's callbacks) write that row, the rows of that epoch on are cut from its
    files, with any line a killed driver left unfinished, so that the report and the curves read one try.
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def __getstate__(self) -> dict:  # saved with the experiment: a resumed driver reads the files afresh
        return {}

    def __setstate__(self, state: dict) -> None:
        self._last = {}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        epoch = result.get("epoch")
        if not isinstance(epoch, int):
            return
        last = self._last.get(trial.trial_id)
        if last is None or epoch <= last:  # the first row this driver sees of the trial, or one gone back
            reported, readable = reported_epochs(trial.local_path)
            if epoch <= reported or not readable:
                cut_history(trial.local_path, epoch)
        self._last[trial.trial_id] = epoch
