"""How the dispatcher's jobs reach a fleet of gradient actors and their results come back: the Ray
``Transport`` (``engine/dispatch.py``; the policy of which actor computes which job is the dispatcher's).

* ``send``: a point travels inside the call under 100 KiB (Ray's own limit for inline arguments), else is
  ``ray.put`` once (the actor maps it without copying); several jobs go in one call with ``jobs_per_call``,
  each with its own result object;
* ``fetch``: ``ray.get``; a dead actor (``RayActorError``) becomes ``SlotLost``, which the dispatcher answers
  with ``replace`` and sends the slot's jobs again;
* ``first_ready``: ``ray.wait`` for one result (the ``arrival`` order);
* ``prefetch``: results of actors on other nodes start moving here before they are needed (see its doc).
"""

from __future__ import annotations

import time
from typing import Any

import ray

from dana_ray.core.cli import one_line
from dana_ray.engine.dispatch import SlotLost
from dana_ray.engine.master import GradientResult, Job
from dana_ray.engine.ray.actors import as_tensor
from dana_ray.engine.ray.fleet import ActorFleet
from dana_ray.engine.telemetry import Traffic

#: Points up to this size travel inside the task itself, like Ray's own small arguments (its 100 KiB
#: ``max_direct_call_object_size``): cheaper than an object-store round trip for small models.
INLINE_BYTES = 100 * 1024


class RayTransport:
    """The dispatcher's transport over one trial's ``ActorFleet``; ``traffic.bytes_through_server`` counts the
    bytes that pass through the server's process."""

    def __init__(self, fleet: ActorFleet, traffic: Traffic, node: str) -> None:
        self.fleet, self.traffic, self.node = fleet, traffic, node  # node: the server's
        self._call_overhead_s: float | None = None

    @property
    def num_slots(self) -> int:
        return self.fleet.num_slots

    def send(self, slot: int, jobs: list[Job]) -> list[Any]:
        points = []
        for job in jobs:
            point = job.point.cpu().numpy()
            # one copy into the object store (the actor maps it without copying); small points go inline
            points.append(ray.put(point) if point.nbytes > INLINE_BYTES else point)
            self.traffic.bytes_through_server += point.nbytes
        actor = self.fleet.actors[slot]
        if len(jobs) == 1:
            return [actor.compute.remote(jobs[0].worker, jobs[0].batch, points[0], jobs[0].lr)]
        return actor.compute_many.options(num_returns=len(jobs)).remote(
            [j.worker for j in jobs], [j.batch for j in jobs], *points, lrs=[j.lr for j in jobs]
        )

    def fetch(self, handle: Any, slot: int) -> GradientResult:
        try:
            grad, bn_stats, loss, seconds = ray.get(handle)
        except ray.exceptions.RayActorError as error:
            raise SlotLost(slot, one_line(error)) from None
        self.traffic.bytes_through_server += grad.nbytes + bn_stats.nbytes + 16
        return GradientResult(as_tensor(grad), as_tensor(bn_stats), loss, seconds)

    def call_overhead_s(self) -> float:
        """A Ray call's round trip to a gradient actor, without work: the median of 5 (measured once)."""
        if self._call_overhead_s is None:
            times = []
            for _ in range(5):
                started = time.perf_counter()
                ray.get(self.fleet.actors[0].ready.remote())
                times.append(time.perf_counter() - started)
            self._call_overhead_s = sorted(times)[2]
        return self._call_overhead_s

    def first_ready(self, handles: list[Any]) -> Any:
        ready, _ = ray.wait(handles, num_returns=1)
        return ready[0]

    def prefetch(self, handles: list[Any]) -> list[Any]:
        """Start copying every in-flight result that is ready on another node to this one, without waiting.

        A result stays on its actor's node until someone asks for it, and ``ray.get`` pulls one object at a
        time: taken in schedule order, each remote gradient's transfer would start only when its turn comes,
        one after another. A non-blocking ``ray.wait(fetch_local=True)`` over the results in flight starts
        their pulls together, so they arrive while the server applies the ones before them (across two
        nodes, at 1 MB a gradient: 3-6x the updates/s, ``benchmarks/ray_executor.py --nodes 2``).
        """
        ready, _ = ray.wait(handles, num_returns=len(handles), timeout=0, fetch_local=True)
        return ready

    def is_remote(self, slot: int) -> bool:
        return self.fleet.nodes[slot] != self.node

    def replace(self, slot: int, cause: str) -> None:
        """Replace the dead actor in ``slot``; the dispatcher then sends its jobs again."""
        self.fleet.replace(slot, cause)
