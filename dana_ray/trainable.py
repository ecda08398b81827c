"""The Tune trainable: one trial of a grid, run on the Ray executor, reporting every epoch.

Each epoch it reports the epoch's metrics (test error first, so Tune's console table shows it); every
``checkpoint_every``-th epoch and the last, with the params' SHA-256 and a checkpoint holding the trial's
whole state; a trial that fails and is restarted by Tune
(``FailureConfig.max_failures``) resumes from its last checkpoint and finishes with the same numbers.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch
from ray import tune

from dana_ray.config import TrialConfig
from dana_ray.engine.executor import params_sha256
from dana_ray.grid import trial_from_tune
from dana_ray.trial import checkpoint_due, run

STATE_FILE = "trial_state.pt"
#: Reported every epoch, in this order (Tune's console shows the first few).
REPORTED = ("test_error", "epoch", "train_loss", "mean_delay", "max_delay", "mean_gap", "test_loss", "step", "lr",
            "gradients", "gradients_per_s", "diverged", "actor_restarts", "server_busy", "delay_histogram")


def trial_resources(config: dict[str, Any]) -> tune.PlacementGroupFactory:
    """One bundle for the trial process, one for the ParameterServer, one per Worker actor."""
    cfg = TrialConfig.from_dict(trial_from_tune(config))
    actor = {"CPU": cfg.cpus_per_actor, "GPU": cfg.gpus_per_actor} if cfg.gpus_per_actor else {"CPU": cfg.cpus_per_actor}
    return tune.PlacementGroupFactory([{"CPU": config.get("_trial_cpus", 0.25)}, {"CPU": cfg.server_cpus}]
                                      + [dict(actor) for _ in range(cfg.num_actors or cfg.num_workers)])


def train_trial(config: dict[str, Any]) -> None:
    """Tune function trainable (uses only ``ray.tune`` APIs inside, as Ray 2.60 requires)."""
    cfg = TrialConfig.from_dict(trial_from_tune(config))
    every = int(config.get("_checkpoint_every", 1))
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume = torch.load(os.path.join(folder, STATE_FILE), weights_only=False)
    context = tune.get_context()
    name = f"{context.get_experiment_name()}/{context.get_trial_name()}"
    last: dict[str, Any] = {}

    def metrics() -> dict[str, Any]:
        return {k: last[k] for k in REPORTED if k in last}

    def on_epoch(row: dict[str, Any]) -> None:
        last.clear()
        last.update(row)
        if not checkpoint_due(row, cfg.epochs, every):  # else report_with_state reports it
            tune.report(metrics())

    def report_with_state(state: dict) -> None:
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, os.path.join(folder, STATE_FILE))
            tune.report(dict(metrics(), params_sha256=params_sha256(state["master"]["rule"]["params"])),
                        checkpoint=tune.Checkpoint.from_directory(folder))

    run(cfg, executor="ray", callback=on_epoch, checkpoint=report_with_state, resume=resume, name=name,
        placement_group=_current_placement_group(), checkpoint_every=every)


def _current_placement_group():
    from ray.util import get_current_placement_group

    return get_current_placement_group()
