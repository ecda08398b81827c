"""The Tune trainable: one trial of a grid, reporting every epoch.

A trial runs on the Ray executor (its own ParameterServer and Worker actors, in its placement group), or,
with the grid's ``tune.executor: local``, the whole simulation in the Tune trial's own process, on the
resources one gradient actor would have (trial-parallel: no per-step traffic; the same numbers for a seeded
schedule). Each epoch it reports the epoch's metrics (test error first, so Tune's console table shows it;
the last epoch with ``params_sha256``); when ``checkpoint_due`` (``tune.checkpoint_every``), the report
carries a checkpoint of the trial's whole state, and a trial that fails and is restarted by Tune
(``FailureConfig.max_failures``) resumes from it and finishes with the same numbers. A checkpoint that
cannot be read is not retried: the trial resumes from the one before (``PREVIOUS_FILE``) or from its start,
and reports a one-line note that the sweep's driver prints (``CheckpointNotes``).
"""

from __future__ import annotations


import os
import shutil
import sys
import tempfile
from typing import Any

import torch
from ray import tune

from dana_ray.config import TrialConfig
from dana_ray.engine.executor import params_sha256
from dana_ray.executors import EXECUTORS, reservation
from dana_ray.grid import trial_from_tune
from dana_ray.trial import run

STATE_FILE = "trial_state.pt"
#: Reported every epoch, in this order (Tune's console shows the first few); a key the row lacks is left out
#: (``discarded_gradients``: rules that discard stale gradients, from ``UpdateRule.epoch_metrics``).
REPORTED = ("test_error", "epoch", "train_loss", "mean_delay", "max_delay", "mean_gap", "test_loss", "step", "lr",
            "gradients", "gradients_per_s", "diverged", "actor_restarts", "server_busy", "jobs_per_call",
            "delay_histogram", "discarded_gradients", "params_sha256")


def trial_resources(config: dict[str, Any]) -> tune.PlacementGroupFactory:
    """The trial's executor's bundles (``dana_ray.executors``): on the Ray executor one for the trial process,
    one for the ParameterServer, one per Worker actor; on the local executor one, a gradient actor's, for
    the trial process that computes everything."""
    cfg = TrialConfig.received(trial_from_tune(config))  # the sweep checked every trial
    settings = reservation(cfg)
    spec = EXECUTORS[config.get("_executor", "ray")]
    return tune.PlacementGroupFactory(spec.bundles(settings, cfg.num_workers, config.get("_trial_cpus", 0.25)),
                                      strategy=spec.strategy(settings))


def train_trial(config: dict[str, Any]) -> None:
    """Tune function trainable (uses only ``ray.tune`` APIs inside, as Ray 2.60 requires)."""
    cfg = TrialConfig.received(trial_from_tune(config))  # the sweep checked every trial
    every = config.get("_checkpoint_every", "auto")
    executor = config.get("_executor", "ray")
    if EXECUTORS[executor].in_trial_process and cfg.compute.cpu_threads is None:  # as a gradient actor would
        cfg = cfg.with_options(cpu_threads=max(1, round(cfg.compute.cpus_per_actor)))
    resume, note = None, None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        resume, note = readable_state(checkpoint)
        if note:
            print(f"note: {note}", file=sys.stderr)  # in Ray's log of the trial; the driver prints the report
            tune.report({"checkpoint_note": note})  # no epoch: the report's reader skips it
    context = tune.get_context()
    name = f"{context.get_experiment_name()}/{context.get_trial_name()}"
    last: dict[str, Any] = {}

    def metrics() -> dict[str, Any]:
        return {k: last[k] for k in REPORTED if k in last}

    def on_epoch(row: dict[str, Any]) -> None:
        last.clear()
        last.update(row)
        if not row["checkpointed"]:  # else report_with_state reports it, with the checkpoint
            tune.report(metrics())

    latest = [checkpoint if resume is not None and not note else None]  # never keep an unreadable one

    def report_with_state(state: dict) -> None:
        keep_previous(latest[0])  # before Tune, keeping one, deletes it
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, os.path.join(folder, STATE_FILE))
            tune.report(dict(metrics(), params_sha256=params_sha256(state["master"]["rule"]["params"])),
                        checkpoint=tune.Checkpoint.from_directory(folder))
        latest[0] = tune.get_checkpoint()  # the one just made, where it was stored

    run(cfg, executor=executor, callback=on_epoch, checkpoint=report_with_state, resume=resume, name=name,
        placement_group=_current_placement_group(), checkpoint_every=every,
        reuse=True, metrics=True)


#: Beside a trial's checkpoints (local storage), the state of the checkpoint before the latest: Tune keeps one
#: checkpoint (``num_to_keep=1``), so before each new one is reported the current one's state file is
#: hard-linked here (no copy; copied where links fail), to resume from when the latest cannot be read.
PREVIOUS_FILE = "previous_trial_state.pt"


def keep_previous(checkpoint: tune.Checkpoint | None) -> None:
    """Link ``checkpoint``'s state file (local storage) to ``PREVIOUS_FILE`` in its trial folder."""
    if checkpoint is None or not _is_local(checkpoint):
        return
    source = os.path.join(checkpoint.path, STATE_FILE)
    target = os.path.join(os.path.dirname(os.path.normpath(checkpoint.path)), PREVIOUS_FILE)
    staging = target + ".tmp"
    try:
        if os.path.exists(staging):
            os.remove(staging)
        try:
            os.link(source, staging)
        except OSError:  # a file system without hard links
            shutil.copyfile(source, staging)
        os.replace(staging, target)
    except OSError as error:  # a missing fallback must not fail the trial
        print(f"note: could not keep {source} as the previous checkpoint ({error})", file=sys.stderr)


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
        except Exception as error:  # noqa: BLE001 - any unreadable file is the same problem
            failed.append(f"{file} ({type(error).__name__}: {' '.join(str(error).split())[:160]})")
            continue
        if not failed:
            return state, None
        return state, (f"checkpoint {failed[0]} cannot be read; resumed from {file} (epoch {state['epoch']})")
    return None, (f"checkpoint {failed[0]} cannot be read and no earlier one can; the trial starts again from "
                  f"its beginning")


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


def _load_state(source: "str | tune.Checkpoint") -> dict:
    if isinstance(source, str):
        state = torch.load(source, weights_only=False)
    else:
        with source.as_directory() as local:
            state = torch.load(os.path.join(local, STATE_FILE), weights_only=False)
    if not isinstance(state, dict) or not {"epoch", "history", "master"} <= set(state):
        raise ValueError("not a trial state (expected epoch, history and master)")
    return state


class CheckpointNotes(tune.Callback):
    """Prints, on the driver, the note a trial reports when it could not resume from its latest checkpoint
    (actors' own output stays in their trial folders)."""

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get("checkpoint_note"):
            print(f"note: {trial}: {result['checkpoint_note']}", file=sys.stderr)


def _current_placement_group():
    from ray.util import get_current_placement_group

    return get_current_placement_group()
