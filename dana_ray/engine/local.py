"""The local executor: the master and one model replica in one process (tests, laptops, one GPU).

Gradients are computed when the master applies them: the result is the same as computing each job when it
is issued, since a job fixes its point and batch.
"""

from __future__ import annotations

from dana_ray.engine.master import Master
from dana_ray.engine.worker import GradientWorker


class LocalExecutor:
    def __init__(self, master: Master, worker: GradientWorker) -> None:
        self.master, self.worker = master, worker
        master.start()

    def run_steps(self, steps: int) -> None:
        """Apply up to ``steps`` gradients; stops early if the trial diverges."""
        for _ in range(steps):
            if self.master.diverged:
                return
            job = self.master.next_job()
            self.master.apply(job, self.worker.compute(job))

    def evaluate(self) -> tuple[float, float]:
        return self.worker.evaluate(self.master.rule.params, self.master.bn_stats)
