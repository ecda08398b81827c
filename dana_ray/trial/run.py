"""Train one configuration: ``dana_ray.run(config, executor="local") -> dict``.

The executor registered under the given name (``config/executors.py``) runs the trial an epoch at a time;
``run`` reports each epoch's row, hands the trial's whole state to a checkpoint callback when due, resumes
from such a state, and returns the run's result (``run_result``).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any

from dana_ray.config import TrialConfig
from dana_ray.config.executors import EXECUTORS, check_supports
from dana_ray.engine.loop import Executor

Callback = Callable[[dict[str, Any]], None]


def make_executor(
    name: str,
    cfg: TrialConfig,
    run_name: str | None = None,
    placement_group: Any = None,
    reuse: bool = False,
    metrics: bool = False,
) -> Executor:
    """The executor registered as ``name`` (``dana_ray.config.executors``) for ``cfg``. ``reuse``: an executor
    that pools its resources (Ray) borrows this process's idle ones where they match. ``metrics``: export the
    trial's live figures to Ray's metrics agent (``engine/ray/metrics.py``), tagged ``run_name`` (in a Ray
    process, as a Tune trial is); the executor makes the sink where its master runs."""
    check_supports(name, [cfg.schedule], cfg.option("server_shards"))
    sink = None
    if metrics:
        from dana_ray.engine.ray.metrics import RayMetrics

        sink = functools.partial(RayMetrics, run_name or "trial", name)
    return EXECUTORS[name].load_make()(cfg, name=run_name, placement_group=placement_group, reuse=reuse, metrics=sink)


#: ``checkpoint_every="auto"``: a checkpoint once at least this many seconds passed since the last one (or the
#: start), so a trial that dies loses about a minute at most and a quick trial writes none.
AUTO_CHECKPOINT_S = 60.0


def run(
    config: dict[str, Any] | TrialConfig,
    executor: str = "local",
    callback: Callback | None = None,
    *,
    checkpoint: Callback | None = None,
    resume: dict | None = None,
    name: str | None = None,
    placement_group: Any = None,
    checkpoint_every: int | str = 1,
    reuse: bool = False,
    metrics: bool = False,
    job_times: Callable[[list[tuple]], None] | None = None,
) -> dict:
    """Train one configuration and return its final metrics (see the README for every key).

    ``callback`` receives one dict per epoch: epoch, step, test_error, test_loss, train_loss, mean_delay,
    max_delay, mean_gap, lr, gradients, gradients_per_s, diverged, sim_time (the simulated clock at the epoch's
    end, ``schedules/clock.py``), wall_time (real seconds of the run so far, the time before a resume
    included), checkpointed (whether ``checkpoint`` is called after this row), and on the run's last row
    ``params_sha256``. ``job_times`` receives, once per epoch, the epoch's applied jobs as trace rows
    (``schedules/trace.py``), from executors that record them (Ray's). ``checkpoint``, called after it when
    ``checkpoint_due`` (every ``checkpoint_every``-th epoch, the last one and a diverged one; or, with
    ``"auto"``, once ``AUTO_CHECKPOINT_S`` passed since the last), receives the trial's whole state
    ``{"epoch", "history", "master"}``; passing such a state back as ``resume`` continues the run exactly
    where it stopped. ``name`` prefixes the Ray actors' names;
    ``placement_group`` (Ray executor) is the trial's reservation (server, then one bundle per actor).
    ``reuse`` (Ray executor): borrow this process's idle ParameterServer and Workers where their resources
    match, and leave them idle for the next run when this one ends well (a long-lived process's trials).
    ``metrics``: export live figures to Ray's metrics agent, tagged ``name`` (``engine/ray/metrics.py``; in a Ray
    process, as a Tune trial is).
    """
    cfg = TrialConfig.from_dict(config)
    started = time.perf_counter()
    engine = make_executor(executor, cfg, name, placement_group, reuse, metrics)
    ended_well = False
    try:
        history: list[dict[str, Any]] = []
        if resume is not None:
            engine.load_state_dict(resume["master"])
            history = [dict(row) for row in resume["history"]]
        wall_before = history[-1].get("wall_time", 0.0) if history else 0.0  # the run's seconds before this process
        steps = min(engine.steps_per_epoch, cfg.max_steps_per_epoch or engine.steps_per_epoch)
        saved = time.perf_counter()
        for epoch in range(len(history) + 1, cfg.epochs + 1):
            if history and history[-1]["diverged"]:
                break
            row = {"epoch": epoch, **engine.run_epoch(steps)}
            row["wall_time"] = wall_before + time.perf_counter() - started
            recorded = row.pop("job_times", None)
            if job_times is not None and recorded:
                job_times(recorded)
            if epoch == cfg.epochs or row["diverged"]:
                row["params_sha256"] = engine.params_sha256()
            row["checkpointed"] = checkpoint is not None and checkpoint_due(
                row, cfg.epochs, checkpoint_every, time.perf_counter() - saved
            )
            history.append(row)
            if callback is not None:
                callback(row)
            if checkpoint is not None and row["checkpointed"]:
                checkpoint({"epoch": epoch, "history": list(history), "master": engine.state_dict()})
                saved = time.perf_counter()
        sha = (history[-1].get("params_sha256") if history else None) or engine.params_sha256()
        ended_well = True
    finally:
        engine.close(reusable=reuse and ended_well)
    return run_result(cfg, history, sha, time.perf_counter() - started, engine.num_params)


def checkpoint_due(row: dict[str, Any], epochs: int, every: int | str, seconds_since_last: float = 0.0) -> bool:
    """Whether ``run`` hands the state to its ``checkpoint`` callback after this epoch's ``row``: every
    ``every``-th epoch, the last and a diverged one; with ``"auto"``, when ``AUTO_CHECKPOINT_S`` passed since
    the last checkpoint (a finished or diverged trial needs none: it is not resumed)."""
    if every == "auto":
        return seconds_since_last >= AUTO_CHECKPOINT_S and row["epoch"] < epochs and not row["diverged"]
    return row["epoch"] % every == 0 or row["epoch"] == epochs or bool(row["diverged"])


def run_result(cfg: TrialConfig, history: list[dict[str, Any]], sha: str, wall: float, num_params: int) -> dict:
    """The result of a run from its per-epoch rows."""
    last = history[-1] if history else {}
    gradients = sum(r["gradients"] for r in history)
    diverged = bool(last.get("diverged", False))
    return {
        "test_error": last.get("test_error", math.nan),
        "train_loss": last.get("train_loss", math.nan),
        "diverged": diverged,
        "steps": last.get("step", 0),
        "epochs": len(history) - int(diverged),
        "mean_delay": sum(r["mean_delay"] * r["gradients"] for r in history) / max(gradients, 1),
        "max_delay": max((r["max_delay"] for r in history), default=0),
        **({"discarded_gradients": last["discarded_gradients"]} if "discarded_gradients" in last else {}),
        "params_sha256": sha,
        "wall_time_s": wall,
        "sim_time": last.get("sim_time", 0.0),
        "num_params": num_params,
        "history": history,
        "config": cfg.to_dict(),
    }
