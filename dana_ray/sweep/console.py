"""What a sweep prints while it runs: a status block for people, not Tune's per-trial boxes.

``SweepConsole`` is a Tune callback (Tune's own hook for following a run; its output engine's boxes, one
config and one result box per trial, are switched off with ``RunConfig(verbose=0)`` unless ``--verbose``).
Counts come from Tune's trial list at each event (so a resumed sweep counts what it inherited):

- on a terminal, one block redrawn in place, at most twice a second: trials done / running / pending /
  errored of the grid, the time elapsed, an ETA (``eta_seconds``: the trial time still to run over the trials
  running at once), and the last finished cells;
- elsewhere (CI, ``ray job logs``, a file), one line per finished or errored trial, and one per failure
  Tune retries (``[retry] ...``), each failure with its cause in one line (``tune_log``), and nothing else.

Every trial's results still land in its folder (``result.json``, ``progress.csv``), and Ray's logs keep the
actors' output.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import Any, TextIO

from ray import tune

from dana_ray.experiments.folder import parse_cell
from dana_ray.sweep.tune_log import failure_cause


def _trial_time(seconds: float) -> str:
    """A trial's time: tenths under 10 s (a quick trial on a pooled server takes well under a second)."""
    return f"{seconds:.1f} s" if seconds < 9.95 else _minutes(seconds)


def _minutes(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def cell_of(trial: Any) -> str:
    """``dana N=16, round-robin, seed 2``: what a trial is, in the grid's words."""
    config = trial.config
    algorithm, workers = parse_cell(config["cell"])
    return f"{algorithm} N={workers}, {config['schedule']}, seed {config['seed']}"


class SweepConsole(tune.Callback):
    def __init__(self, total: int, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.total = total
        self.stream = stream
        self.live = live
        self.started = time.monotonic()
        self.trial_seconds: list[float] = []  # each trial finished in this run: its own running time
        self.last: deque[str] = deque(maxlen=3)
        self._drawn = 0
        self._next_draw = 0.0
        self._ended: dict[str, str] = {}  # trial id -> TERMINATED or ERROR, before Tune's status says so

    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stdout

    def _is_live(self) -> bool:
        return self.live if self.live is not None else self._out().isatty()

    # -- Tune's hooks ----------------------------------------------------------------------------------------

    def setup(
        self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None, **info: Any
    ) -> None:  # the run starts (again, after --resume: Tune unpickled this)
        self.started, self._drawn = time.monotonic(), 0
        self.trial_seconds = []
        self.last.clear()
        self._ended = {}

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended[trial.trial_id] = "TERMINATED"
        result = trial.last_result or {}
        if isinstance(result.get("time_total_s"), (int, float)):
            self.trial_seconds.append(float(result["time_total_s"]))
        error = result.get("test_error")
        outcome = (
            "diverged"
            if result.get("diverged")
            else (f"test error {error:.2f}%" if isinstance(error, (int, float)) else "done")
        )
        self._finished(
            trials,
            f"{cell_of(trial)}: {outcome} ({result.get('epoch', 0)} epochs, "
            f"{_trial_time(result.get('time_total_s', 0.0))})",
        )

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended[trial.trial_id] = "ERROR"
        cause = failure_cause(trial)
        what = f"FAILED: {cause} (more in" if cause else "FAILED (see"
        self._finished(trials, f"{cell_of(trial)}: {what} {trial.path}/error.txt)")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        cause = failure_cause(trial) or f"see {trial.path}/error.txt"
        what = f"{cell_of(trial)}: failed ({cause}); Tune restarts it from its last checkpoint"
        self.last.appendleft(what)
        if self._is_live():
            self._draw(trials)
        else:
            print(f"[retry] {what}", file=self._out(), flush=True)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self._is_live() and time.monotonic() >= self._next_draw:
            self._draw(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._is_live():
            self._draw(trials)

    # -- output ----------------------------------------------------------------------------------------------

    def counts(self, trials: list) -> dict[str, int]:
        status = [self._ended.get(t.trial_id, t.status) for t in trials]
        done = status.count("TERMINATED")
        errored = status.count("ERROR")
        running = status.count("RUNNING")
        return {
            "done": done,
            "running": running,
            "errored": errored,
            "pending": max(self.total - done - running - errored, 0),
        }

    def eta_seconds(self, trials: list) -> float | None:
        """The trial time still to run over the trials that run at once: a running trial has the mean finished
        trial's time less what it has run (at least 0), a pending one the mean; None before a trial finished.
        Not the time elapsed over the trials done: that counts Ray's start, and trials that ran side by side
        as if one after another (the first ETA of a 2-core quickstart said 69 s with 4 s to go)."""
        if not self.trial_seconds:
            return None
        mean = sum(self.trial_seconds) / len(self.trial_seconds)
        running = [t for t in trials if self._ended.get(t.trial_id, t.status) == "RUNNING"]
        ran = [float((t.last_result or {}).get("time_total_s") or 0.0) for t in running]
        work = sum(max(mean - r, 0.0) for r in ran) + self.counts(trials)["pending"] * mean
        return work / max(len(running), 1)

    def status_line(self, trials: list) -> str:
        c = self.counts(trials)
        elapsed = time.monotonic() - self.started
        left, eta_s = c["pending"] + c["running"], self.eta_seconds(trials)
        eta = f"; about {_minutes(eta_s)} left" if eta_s is not None and left else ""
        return (
            f"{c['done']} of {self.total} trials done, {c['running']} running, {c['pending']} pending, "
            f"{c['errored']} errored; {_minutes(elapsed)} elapsed{eta}"
        )

    def _finished(self, trials: list, what: str) -> None:
        self.last.appendleft(what)
        if self._is_live():
            self._draw(trials)
        else:
            c = self.counts(trials)
            print(f"[{c['done'] + c['errored']}/{self.total}] {what}", file=self._out(), flush=True)

    def _draw(self, trials: list) -> None:
        lines = [self.status_line(trials)] + [f"  last: {what}" for what in self.last]
        out = self._out()
        if self._drawn:
            out.write(f"\x1b[{self._drawn}F\x1b[J")  # back to the block's first line, and clear below
        out.write("\n".join(lines) + "\n")
        out.flush()
        self._drawn = len(lines)
        self._next_draw = time.monotonic() + 0.5
