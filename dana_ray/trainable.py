"""The Tune trainable: one trial of a grid, reporting every epoch.

A trial runs on the Ray executor (its own ParameterServer and Worker actors, in its placement group), or,
with the grid's ``tune.executor: local``, the whole simulation in the Tune trial's own process, on the
resources one gradient actor would have (trial-parallel: no per-step traffic; the same numbers for a seeded
schedule). Each epoch it reports the epoch's metrics (test error first, so Tune's console table shows it;
the last epoch with ``params_sha256``); when ``checkpoint_due`` (``tune.checkpoint_every``), the report
carries a checkpoint of the trial's whole state, and a trial that fails and is restarted by Tune
(``FailureConfig.max_failures``) resumes from it and finishes with the same numbers.
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
from dana_ray.trial import run

STATE_FILE = "trial_state.pt"
#: Reported every epoch, in this order (Tune's console shows the first few).
REPORTED = ("test_error", "epoch", "train_loss", "mean_delay", "max_delay", "mean_gap", "test_loss", "step", "lr",
            "gradients", "gradients_per_s", "diverged", "actor_restarts", "server_busy", "delay_histogram",
            "params_sha256")


def trial_resources(config: dict[str, Any]) -> tune.PlacementGroupFactory:
    """Ray executor: one bundle for the trial process, one for the ParameterServer, one per Worker actor.
    Local executor: one bundle, a gradient actor's, for the trial process that computes everything."""
    cfg = TrialConfig.from_dict(trial_from_tune(config))
    actor = {"CPU": cfg.cpus_per_actor, "GPU": cfg.gpus_per_actor} if cfg.gpus_per_actor else {"CPU": cfg.cpus_per_actor}
    if config.get("_executor", "ray") == "local":
        return tune.PlacementGroupFactory([actor])
    return tune.PlacementGroupFactory([{"CPU": config.get("_trial_cpus", 0.25)}, {"CPU": cfg.server_cpus}]
                                      + [dict(actor) for _ in range(cfg.num_actors or cfg.num_workers)])


def train_trial(config: dict[str, Any]) -> None:
    """Tune function trainable (uses only ``ray.tune`` APIs inside, as Ray 2.60 requires)."""
    cfg = TrialConfig.from_dict(trial_from_tune(config))
    every = config.get("_checkpoint_every", "auto")
    executor = config.get("_executor", "ray")
    if executor == "local" and cfg.cpu_threads is None:  # as a gradient actor would (Ray starts with one)
        cfg = TrialConfig.from_dict(dict(cfg.to_dict(), cpu_threads=max(1, round(cfg.cpus_per_actor))))
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
        if not row["checkpointed"]:  # else report_with_state reports it, with the checkpoint
            tune.report(metrics())

    def report_with_state(state: dict) -> None:
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, os.path.join(folder, STATE_FILE))
            tune.report(dict(metrics(), params_sha256=params_sha256(state["master"]["rule"]["params"])),
                        checkpoint=tune.Checkpoint.from_directory(folder))

    run(cfg, executor=executor, callback=on_epoch, checkpoint=report_with_state, resume=resume, name=name,
        placement_group=_current_placement_group() if executor == "ray" else None, checkpoint_every=every,
        reuse=True)


def _current_placement_group():
    from ray.util import get_current_placement_group

    return get_current_placement_group()
