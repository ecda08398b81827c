"""The simulated clock: when each applied result would have arrived, had every job taken the time its schedule's
time model says (``Schedule.batch_time``), for any rule and on any executor.

A job starts when it is issued (the clock's time then) and ends ``H x batch_time(worker, job)`` later (H: the
rule's local steps). The master applies results in its own order (the schedule's, or a synchronous round's);
applying one moves the clock to ``max(now, the job's end)``: a result is never applied before its job ended,
nor the clock set back. So

- an asynchronous rule under an event-queue schedule (``gamma``, ``trace``) applies each result when its job
  ends: N workers of per-batch times t_i apply sum_i 1 / t_i results per time unit;
- a synchronous round (SSGD, DiLoCo) ends when its slowest job does (max_i H t_i), and every worker's next job
  starts then, together;
- a discarded result (a rule that drops stale gradients) cost its job's time all the same.

With no time model (``schedule: arrival``: real order, on Ray) a job lasts the seconds it was measured to take
where it was computed. Plain state, O(1) per applied result; it never touches parameters, so it changes no
``params_sha256``.
"""

from __future__ import annotations

from collections.abc import Callable

#: ``batch_time(worker, job)``: time units per batch of that job; None: the measured seconds.
TimeModel = Callable[[int, int], float]


class SimClock:
    def __init__(self, batch_time: TimeModel | None, steps_per_job: int = 1) -> None:
        self.batch_time, self.steps_per_job = batch_time, steps_per_job
        self.now = 0.0
        self.started: dict[int, tuple[float, float]] = {}  # worker -> (start time, end time or nan: measured)

    def start(self, worker: int, job: int) -> None:
        """``worker``'s job number ``job`` was issued now."""
        end = self.now + self.steps_per_job * self.batch_time(worker, job) if self.batch_time else float("nan")
        self.started[worker] = (self.now, end)

    def finish(self, worker: int, measured_s: float = 0.0) -> float:
        """``worker``'s job's result is applied (``measured_s``: its measured seconds, used when there is no time
        model); returns the clock's time."""
        start, end = self.started.pop(worker)
        if end != end:  # nan: no time model
            end = start + measured_s
        self.now = max(self.now, end)
        return self.now

    def state_dict(self) -> dict:
        return {"now": self.now, "started": {w: list(times) for w, times in self.started.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.now = float(state["now"])
        self.started = {int(w): (float(s), float(e)) for w, (s, e) in state["started"].items()}
