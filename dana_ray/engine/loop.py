"""What ``dana_ray.run`` drives: an executor runs a trial one epoch at a time.

``MasterLoop`` is the part shared by every executor that holds the ``Master`` in its own process (the local
executor, and the Ray executor's ``ParameterServer`` actor): an epoch is ``run_steps`` (executor-specific:
where gradients are computed), then the master's metrics, then ``evaluate``.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

import numpy as np
import torch

from dana_ray.engine.master import Master
from dana_ray.engine.telemetry import Sink, Telemetry, Traffic


def params_sha256(*parts: torch.Tensor | np.ndarray) -> str:
    """SHA-256 of the parameters as float32 bytes, given whole or as consecutive slices (a sharded server's, in
    coordinate order: the same digest as the whole): the identity of a run's outcome."""
    digest = hashlib.sha256()
    for part in parts:
        array = part.detach().float().cpu().numpy() if isinstance(part, torch.Tensor) else part
        digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    return digest.hexdigest()


class Executor:
    """The interface: ``steps_per_epoch``, ``num_classes``, ``num_params`` and these calls."""

    steps_per_epoch: int
    num_classes: int
    num_params: int

    def run_epoch(self, steps: int) -> dict[str, Any]:
        """Apply ``steps`` gradients (fewer if the run diverges), then evaluate; returns the epoch's row."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    def params_sha256(self) -> str:
        raise NotImplementedError

    def close(self, reusable: bool = False) -> None:
        """Release what the executor holds (threads setting, actors); ``reusable``: the run ended well, and an
        executor that pools its resources may keep them for the next run."""


class MasterLoop(Executor):
    """``traffic``: the executor's running totals for telemetry (seconds blocked on gradients, bytes, restarts);
    ``telemetry``: samples them and the master's totals into a sink (``watch``); off unless watched. Each
    ``run_steps`` calls ``telemetry.tick()`` once per applied gradient."""

    master: Master
    traffic: Traffic
    telemetry: Telemetry = Telemetry.off()

    def watch(self, sink: Sink | None) -> None:
        """Hand this trial's live figures to ``sink`` (None: none); call once the master is built. The
        executor's ``traffic`` for this trial is kept if it made one already (a server counting restarts
        while its actors start), else made here."""
        self.traffic = self.__dict__.get("traffic") or Traffic()
        self.telemetry = Telemetry(sink, self.master.totals, self.traffic) if sink is not None else Telemetry.off()

    def run_steps(self, steps: int) -> None:
        raise NotImplementedError

    def evaluate(self) -> tuple[float, float]:
        raise NotImplementedError

    def run_epoch(self, steps: int) -> dict[str, Any]:
        started = time.perf_counter()
        self.telemetry.begin_steps()
        self.run_steps(steps)
        self.telemetry.end_steps()
        elapsed = self.step_seconds = time.perf_counter() - started
        metrics = self.master.take_metrics()
        if self.master.diverged:
            test_error, test_loss = 100.0 * (1 - 1 / self.num_classes), math.nan
            metrics["train_loss"] = math.nan
        else:
            test_error, test_loss = self.evaluate()
        row = dict(
            metrics,
            step=self.master.step,
            test_error=test_error,
            test_loss=test_loss,
            lr=self.master.rule.lr_at(self.master.step),
            diverged=self.master.diverged,
            gradients_per_s=metrics["gradients"] / elapsed if elapsed > 0 else math.nan,
            sim_time=self.master.clock.now,
        )
        self.telemetry.epoch(row)
        return row

    def state_dict(self) -> dict:
        """The master's state and every logical worker's worker-side state (empty for most rules)."""
        return dict(self.master.state_dict(), worker_side=self.worker_side_state(self.master.next_batches()))

    def load_state_dict(self, state: dict) -> None:
        self.master.load_state_dict(state)
        self.load_worker_side_state(state.get("worker_side", {}))

    def worker_side_state(self, next_batches: dict[int, int]) -> dict:
        """Every logical worker's worker-side state, as of the batch of its outstanding job ({} if none)."""
        raise NotImplementedError

    def load_worker_side_state(self, state: dict) -> None:
        raise NotImplementedError

    def params_sha256(self) -> str:
        return params_sha256(self.master.rule.params)
