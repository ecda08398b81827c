"""Which replica computes which job, and when: the dispatch policy, apart from how jobs travel.

A ``Transport`` moves jobs to numbered *slots* (model replicas: the Ray executor's Worker actors, or a
test's in-process fake) and results back; it knows nothing of policy. The ``Dispatcher`` decides, for the
server's ``Master``:

- **where**: a rule with worker-side state keeps logical worker i on slot i mod P (sticky: the slot holds
  its state); otherwise each call goes to the least-loaded slot (ties to the lowest index);
- **when**: with ``per_call`` > 1 (``jobs_per_call`` or ``vmap_jobs``) issued jobs wait until that many
  are pending, then go as one call per slot; a job the master needs now is never held (``result`` sends
  whatever is pending first), so nothing waits for companions that will not come. ``per_call="auto"``
  sizes it once from what it measures over the first results (``size_calls``): a gradient's compute time
  g (reported with each result) against a call's overhead c (``Transport.call_overhead_s``), the fewest
  jobs per call that make c at most 2% of their work, k = ceil(c / (0.02 g)), at least ``vmap_jobs``
  and at most N / (2P): a call's results come back together when its last job is done, so each slot needs
  two calls in flight to compute one while the server applies the other (measured on the quickstart's
  digits with one actor: at N = 4, one job a call gives 1.6x the updates/s of four). A call also costs
  CPU on both sides, which trials sharing a machine pay in throughput, hence 2% rather than a latency
  budget (``benchmarks/sweep_overhead.py --jobs-per-call auto 8 1``). The numbers do not depend on k;
- **losses**: a slot whose replica died (``SlotLost`` from ``fetch``) is replaced by the transport and
  every job it held is sent again, to the same slot; the numbers do not change (a job's result depends on
  the job alone);
- **pulling ahead**: before each blocking fetch, results of remote slots still in flight are asked to move
  here without waiting (``Transport.prefetch``), so their transfers overlap the server's work.

It also keeps the server's ``Traffic``: the seconds spent blocked on results, and the bytes of points sent
and results received. ``run_steps`` is the server's step loop over it. No Ray here: the dispatcher is tested
against an in-process fake transport (``tests/test_dispatch.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable
from typing import Protocol

from dana_ray.engine.master import GradientResult, Job, Master, nbytes
from dana_ray.engine.telemetry import Telemetry, Traffic


class SlotLost(Exception):
    """The replica in ``slot`` died; ``cause`` says why in one line."""

    def __init__(self, slot: int, cause: str) -> None:
        super().__init__(f"slot {slot} lost: {cause}")
        self.slot, self.cause = slot, cause


class Transport(Protocol):
    """How jobs reach slots and results come back (one implementation per executor that has slots)."""

    @property
    def num_slots(self) -> int:
        """How many slots there are (numbered 0 .. num_slots - 1)."""

    def send(self, slot: int, jobs: list[Job]) -> list[Hashable]:
        """Start ``jobs`` on ``slot`` as one call; one handle per job, in order."""

    def fetch(self, handle: Hashable, slot: int) -> GradientResult:
        """The result of a job sent to ``slot``, waiting for it; raises ``SlotLost`` if the slot died."""

    def first_ready(self, handles: list[Hashable]) -> Hashable:
        """Wait until one of ``handles`` is ready; return it."""

    def prefetch(self, handles: list[Hashable]) -> list[Hashable]:
        """Start moving these results to the server without waiting; return those already here."""

    def is_remote(self, slot: int) -> bool:
        """Whether ``slot``'s results live away from the server (so they are worth pulling ahead)."""

    def replace(self, slot: int, cause: str) -> None:
        """Put a new replica in ``slot`` (raise, in one line, if that is not possible)."""

    def call_overhead_s(self) -> float:
        """The round trip of one call that does no work (needed for ``per_call="auto"`` only)."""


#: ``per_call="auto"``: results measured before the size is decided, and the share of a call's work its
#: overhead may take.
AUTO_WARMUP = 8
AUTO_OVERHEAD_SHARE = 0.02


class Dispatcher:
    def __init__(
        self,
        transport: Transport,
        per_call: int | str = 1,
        sticky: bool = False,
        traffic: Traffic | None = None,
        vmap_jobs: int = 1,
        num_workers: int | None = None,
    ) -> None:
        """``per_call``: jobs per call (at least ``vmap_jobs``, which the slots compute together), or
        ``"auto"``; ``num_workers``: N, which bounds what ``auto`` chooses (default: one job per slot)."""
        self.transport, self.sticky, self.vmap_jobs = transport, sticky, vmap_jobs
        self.auto = per_call == "auto"
        self.per_call = vmap_jobs if self.auto else max(int(per_call), vmap_jobs)
        self.most_per_call = max(1, (num_workers or transport.num_slots) // (2 * transport.num_slots))
        self.measured: list[float] = []  # compute seconds of the first results, while sizing
        self.traffic = traffic if traffic is not None else Traffic()
        self.inflight: dict[int, tuple[Hashable, int, Job]] = {}  # logical worker -> (handle, slot, job)
        self.pending: list[Job] = []  # issued, waiting to be sent together
        self.load = [0] * transport.num_slots
        self.local: set[Hashable] = set()  # in-flight results of remote slots known to be here already
        self.pulled_ahead = 0  # such results found here before they were needed (diagnostics)

    # -- sending ------------------------------------------------------------------------------------------

    def dispatch(self, job: Job, slot: int | None = None) -> None:
        """Send ``job`` now (to ``slot`` if given), or hold it until ``per_call`` jobs are pending."""
        if slot is None and self.per_call > 1:
            self.pending.append(job)
            if len(self.pending) >= self.per_call:
                self.flush()
            return
        self._send([job], self.slot_for(job) if slot is None else slot)

    def flush(self) -> None:
        """Send every pending job: one call per sticky slot, else one call to the least-loaded slot."""
        groups: dict[int, list[Job]] = {}
        for job in self.pending:
            groups.setdefault(self.home_slot(job.worker) if self.sticky else -1, []).append(job)
        self.pending = []
        for slot, jobs in groups.items():
            self._send(jobs, self.least_loaded() if slot == -1 else slot)

    def slot_for(self, job: Job) -> int:
        return self.home_slot(job.worker) if self.sticky else self.least_loaded()

    def home_slot(self, worker: int) -> int:
        """The slot that holds logical worker ``worker``'s worker-side state (sticky rules)."""
        return worker % self.transport.num_slots

    def least_loaded(self) -> int:
        return min(range(self.transport.num_slots), key=lambda k: (self.load[k], k))

    def _send(self, jobs: list[Job], slot: int) -> None:
        for job, handle in zip(jobs, self.transport.send(slot, jobs)):
            self.inflight[job.worker] = (handle, slot, job)
            self.traffic.bytes_to_workers += nbytes(job.point)
        self.load[slot] += len(jobs)

    # -- receiving ----------------------------------------------------------------------------------------

    def result(self, job: Job) -> GradientResult:
        """``job``'s result (sending it first if it is still pending); a lost slot is replaced and its jobs
        sent again."""
        if job.worker not in self.inflight:
            self.flush()  # the job needed now is still waiting for companions: send them all
        while True:
            handle, slot, _ = self.inflight[job.worker]
            self._pull_ahead()
            try:
                started = time.perf_counter()
                result = self.transport.fetch(handle, slot)
                self.traffic.waiting_s += time.perf_counter() - started
            except SlotLost as lost:
                self.replace_slot(lost.slot, lost.cause)
                continue
            result.slot = slot
            del self.inflight[job.worker]
            self.local.discard(handle)
            self.load[slot] -= 1
            if self.auto:
                self.measured.append(result.seconds)
                if len(self.measured) >= AUTO_WARMUP:
                    self.size_calls()
            self.traffic.bytes_from_workers += nbytes(result.grad) + nbytes(result.bn_stats)
            return result

    def size_calls(self) -> None:
        """``per_call="auto"``: decide jobs per call from the gradients measured so far (see the module)."""
        gradient_s = sorted(self.measured)[len(self.measured) // 2]
        overhead_s = self.transport.call_overhead_s()
        wanted = math.ceil(overhead_s / (AUTO_OVERHEAD_SHARE * gradient_s)) if gradient_s > 0 else self.most_per_call
        self.per_call = max(self.vmap_jobs, min(self.most_per_call, max(1, wanted)))
        self.auto = False

    def first_arrived(self) -> int:
        """The logical worker whose result is ready first (the ``arrival`` order)."""
        self.flush()
        workers = {handle: worker for worker, (handle, _, _) in self.inflight.items()}
        started = time.perf_counter()
        ready = self.transport.first_ready(list(workers))
        self.traffic.waiting_s += time.perf_counter() - started
        return workers[ready]

    def _pull_ahead(self) -> None:
        pending = [
            handle
            for handle, slot, _ in self.inflight.values()
            if self.transport.is_remote(slot) and handle not in self.local
        ]
        if pending:
            ready = self.transport.prefetch(pending)
            self.local.update(ready)
            self.pulled_ahead += len(ready)

    def replace_slot(self, slot: int, cause: str) -> None:
        """A new replica in ``slot`` (the transport's), and every job the dead one held sent to it again;
        for whoever learns of the death first (a fetch here, or the server's own calls to its slots)."""
        self.transport.replace(slot, cause)
        self.traffic.actor_restarts += 1
        for handle, held_by, job in list(self.inflight.values()):
            if held_by == slot:
                self.local.discard(handle)
                self.load[slot] -= 1
                self.dispatch(job, slot)

    def clear(self) -> None:
        """Forget every job in flight or pending (a restored master sends its outstanding jobs again)."""
        self.inflight.clear()
        self.local.clear()
        self.pending.clear()
        self.load = [0] * self.transport.num_slots


def run_steps(master: Master, dispatcher: Dispatcher, telemetry: Telemetry, steps: int) -> None:
    """Apply ``steps`` gradients in the schedule's order (with no schedule, in the order they arrive), each
    applied gradient's new jobs dispatched at once; stops early if the run diverges."""
    arrival = master.follows_arrival()
    for _ in range(steps):
        if master.diverged:
            return
        job = master.outstanding[dispatcher.first_arrived()] if arrival else master.next_job()
        result = dispatcher.result(job)
        for new_job in master.apply(job, result):
            dispatcher.dispatch(new_job)
        telemetry.tick()
