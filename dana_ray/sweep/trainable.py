"""The Tune trainable: one trial of a grid, reporting every epoch.

A trial runs on the Ray executor (its own ParameterServer and Worker actors, in its placement group), or,
with the grid's ``tune.executor: local``, the whole simulation in the Tune trial's own process, on the
resources one gradient actor would have (trial-parallel: no per-step traffic; the same numbers for a seeded
schedule). Each epoch it reports the epoch's metrics (test error first, so Tune's console table shows it;
the last epoch with ``params_sha256``); when ``checkpoint_due`` (``tune.checkpoint_every``), the report
carries a checkpoint of the trial's whole state, and a trial that fails and is restarted by Tune
(``FailureConfig.max_failures``) resumes from it and finishes with the same numbers. A checkpoint that
cannot be read is not retried: the trial resumes from the one before (``PREVIOUS_FILE``) or from its start,
and reports a one-line note that the sweep's driver prints (``CheckpointNotes``). On the Ray executor every
applied job's compute time goes to ``job_times.csv`` in the trial's folder (``schedules/trace.py``: what
``schedule: trace`` replays).
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import torch
from ray import tune

from dana_ray.config import EXECUTORS, TrialConfig
from dana_ray.engine.loop import params_sha256
from dana_ray.engine.ray.devices import hide_unreserved_gpus
from dana_ray.experiments.grid import trial_from_tune
from dana_ray.schedules.trace import TRACE_FILE, append_job_times
from dana_ray.sweep.checkpoints import STATE_FILE, keep_previous, readable_state
from dana_ray.trial import run

log = logging.getLogger(__name__)

#: Reported every epoch, in this order (Tune's console shows the first few); a key the row lacks is left out
#: (``discarded_gradients``: rules that discard stale gradients, from ``UpdateRule.epoch_metrics``).
REPORTED = (
    "test_error",
    "epoch",
    "train_loss",
    "mean_delay",
    "max_delay",
    "mean_gap",
    "test_loss",
    "step",
    "lr",
    "gradients",
    "gradients_per_s",
    "sim_time",
    "wall_time",
    "diverged",
    "actor_restarts",
    "server_busy",
    "jobs_per_call",
    "delay_histogram",
    "discarded_gradients",
    "params_sha256",
)


def trial_resources(config: dict[str, Any]) -> tune.PlacementGroupFactory:
    """The trial's executor's bundles (``config/executors.py``): on the Ray executor one for the trial process,
    one for the ParameterServer, one per Worker actor; on the local executor one, a gradient actor's, for
    the trial process that computes everything."""
    cfg = TrialConfig.received(trial_from_tune(config))  # the sweep checked every trial
    settings = cfg.settings()
    spec = EXECUTORS[config.get("_executor", "ray")]
    return tune.PlacementGroupFactory(
        spec.bundles(settings, cfg.num_workers, config.get("_trial_cpus", 0.25)), strategy=spec.strategy(settings)
    )


def train_trial(config: dict[str, Any]) -> None:
    """Tune function trainable (uses only ``ray.tune`` APIs inside, as Ray 2.60 requires)."""
    hide_unreserved_gpus()  # first: a trial process that reserved no GPU sees none (``engine/ray/devices``)
    cfg = TrialConfig.received(trial_from_tune(config))  # the sweep checked every trial
    every = config.get("_checkpoint_every", "auto")
    executor = config.get("_executor", "ray")
    resume, note = None, None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        resume, note = readable_state(checkpoint)
        if note:
            log.warning("%s", note)  # in Ray's log of the trial; the driver shows the report's copy
    context = tune.get_context()
    name = f"{context.get_experiment_name()}/{context.get_trial_name()}"
    last: dict[str, Any] = {}

    untold = [note] if note else []  # goes with the first epoch reported

    def metrics(sha: str = "") -> dict[str, Any]:
        """The epoch's row; every row has the same keys (Tune's progress.csv takes its columns from a try's
        first row and, continuing a file, writes no new header): ``params_sha256`` and ``checkpoint_note``
        are empty where they do not apply."""
        row = {k: last[k] for k in REPORTED if k in last}
        row["params_sha256"] = sha
        row["checkpoint_note"] = untold.pop() if untold else ""
        return row

    def on_epoch(row: dict[str, Any]) -> None:
        last.clear()
        last.update(row)
        if not row["checkpointed"]:  # else report_with_state reports it, with the checkpoint
            tune.report(metrics(row.get("params_sha256", "")))  # the run's last row has it

    latest = [checkpoint if resume is not None and not note else None]  # never keep an unreadable one

    def report_with_state(state: dict) -> None:
        keep_previous(latest[0])  # before Tune, keeping one, deletes it
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, os.path.join(folder, STATE_FILE))
            tune.report(
                metrics(params_sha256(state["master"]["rule"]["params"])),
                checkpoint=tune.Checkpoint.from_directory(folder),
            )
        latest[0] = tune.get_checkpoint()  # the one just made, where it was stored

    trace = os.path.join(context.get_trial_dir(), TRACE_FILE)
    run(
        cfg,
        job_times=lambda rows: append_job_times(trace, rows),
        executor=executor,
        callback=on_epoch,
        checkpoint=report_with_state,
        resume=resume,
        name=name,
        placement_group=_current_placement_group(),
        checkpoint_every=every,
        reuse=True,
        metrics=True,
    )


def _current_placement_group():
    from ray.util import get_current_placement_group

    return get_current_placement_group()
