"""The ``ParameterServer`` actor: the master of one trial, stepping it an epoch at a time (``MasterLoop``)
through a ``Dispatcher`` over its gradient actors.

Three parts, each with one job: the **epoch loop** (``engine/loop.MasterLoop``: steps, metrics, evaluation),
the **transport** (``transport.RayTransport``: calls to actors, results back, pulling ahead) and the **actor
fleet** (``fleet.ActorFleet``: the actors by slot, started, reset, replaced). The server builds the master
from actor 0's model, hands the dispatcher its jobs, and holds the trial's counters.

Results are applied in the order the schedule names, waiting for that worker's gradient even if others
arrive first; with ``schedule="arrival"``, whichever arrives first. A gradient actor that dies is replaced
(up to ``max_actor_restarts`` times per trial) and the jobs it held are sent again: a job is fully determined
by (seed, worker, batch, point), so the master applies each job exactly once whatever happened to the actor,
and the run's numbers do not change. The server owns its actors, so killing it ends them too.

The server runs its update on round(``server_cpus``) torch threads (Ray starts every actor with one, and the
update is memory-bound).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import ray
import torch

from dana_ray.config import TrialConfig, ray_layout
from dana_ray.core.cli import one_line
from dana_ray.engine.build import build_master
from dana_ray.engine.dispatch import Dispatcher, run_steps
from dana_ray.engine.loop import MasterLoop
from dana_ray.engine.master import Master
from dana_ray.engine.ray.actors import RemoteWorker
from dana_ray.engine.ray.devices import hide_unreserved_gpus
from dana_ray.engine.ray.fleet import ActorFleet, Restarts
from dana_ray.engine.ray.transport import RayTransport
from dana_ray.engine.telemetry import Sink, Traffic
from dana_ray.engine.threads import torch_threads, use_threads


class ParameterServer(MasterLoop):
    """The master of one trial and the owner of its Worker actors."""

    def __init__(
        self,
        config: dict,
        name: str,
        num_actors: int,
        worker_class: Any = None,
        placement_group: Any = None,
        metrics: Callable[[], Sink] | None = None,
    ) -> None:
        """``worker_class``: the remote class of the gradient actors (default ``Worker``; benchmarks pass a
        stub with the same methods to time the server alone). ``placement_group``: the trial's reservation
        (``config.RayLayout``), or None outside Tune. ``metrics``: makes the sink of the trial's live figures
        here (``engine/ray/metrics.RayMetrics``), or None."""
        hide_unreserved_gpus()  # first: θ lives on the CPU here; a compile must not make a CUDA context
        self._serve(config, name, metrics)
        self.node = ray.get_runtime_context().get_node_id()  # this server's
        settings = self.cfg.settings()
        self.fleet = ActorFleet(
            self.cfg,
            name,
            worker_class or RemoteWorker,
            placement_group,
            ray_layout(dict(settings, num_actors=num_actors), self.cfg.num_workers),
            self.restarts,
        )

    @property
    def num_actors(self) -> int:
        return self.fleet.num_slots

    def start(self) -> dict[str, Any]:
        """Start the actors, build the master from actor 0's model, issue the first jobs."""
        self.fleet.start()
        return self._begin()

    def reset(self, config: dict, name: str, metrics: Callable[[], Sink] | None = None) -> dict[str, Any]:
        """Serve a new trial with the same actors (a pool: no process starts, the data stays loaded): reset
        each actor to the new config, then begin as ``start`` does. The previous trial's jobs still in flight
        finish first and are dropped."""
        self._serve(config, name, metrics)
        self.fleet.reset(self.cfg, name, self.restarts)
        return self._begin()

    def _serve(self, config: dict, name: str, metrics: Callable[[], Sink] | None) -> None:
        """Take trial ``name``'s config, with its counters at zero."""
        self.cfg = TrialConfig.received(config)
        use_threads(torch_threads(self.cfg.section("ray").server_cpus))
        self.name, self.metrics = name, metrics
        rule = self.cfg.rule
        keeps_state = rule.make_worker_side(self.cfg.momentum, rule.resolved_options(self.cfg.algorithm_options))
        self.restarts = Restarts(
            self.cfg.section("ray").max_actor_restarts, keeps_state is not None, self.cfg.algorithm
        )
        self.traffic = Traffic()  # this trial's running totals (restarts while starting included)

    #: Server shards: 0 here (θ is in this process); a ``ShardedParameterServer`` has K >= 2.
    num_shards = 0

    def _begin(self) -> dict[str, Any]:
        info = ray.get(self.fleet.actors[0].describe.remote(with_params=not self.num_shards))
        self.steps_per_epoch, self.num_classes = info["steps_per_epoch"], info["num_classes"]
        self.num_params = info["num_params"]
        self.master = self._build_master(info)
        self.watch(self.metrics() if self.metrics is not None else None)
        self.transport = self._transport()
        # A rule with worker-side state keeps logical worker i on actor slot i % P, which holds its state;
        # otherwise each job goes to the least-loaded actor.
        self.dispatcher = Dispatcher(
            self.transport,
            per_call=self.cfg.section("ray").jobs_per_call,
            vmap_jobs=self.cfg.compute.vmap_jobs,
            num_workers=self.cfg.num_workers,
            sticky=self.restarts.keeps_state,
            traffic=self.traffic,
        )
        for job in self.master.start():
            self.dispatcher.dispatch(job)
        self.master.take_job_times()  # from now on: every applied job's compute time, for the trial's trace
        return {
            "steps_per_epoch": self.steps_per_epoch,
            "num_classes": self.num_classes,
            "num_params": self.num_params,
            "num_actors": self.num_actors,
        }

    def _transport(self) -> RayTransport:
        return RayTransport(self.fleet, self.traffic, self.node)

    def _build_master(self, info: dict[str, Any]) -> Master:
        return build_master(
            self.cfg,
            torch.tensor(info["params"]),
            torch.tensor(info["bn_stats"]),
            info["bn_momentum"],
            self.steps_per_epoch,
        )

    # -- the loop ---------------------------------------------------------------------------------------------

    def run_steps(self, steps: int) -> None:
        """Apply ``steps`` gradients; ``traffic.waiting_s`` accumulates the time spent blocked on results."""
        run_steps(self.master, self.dispatcher, self.telemetry, steps)

    def run_epoch(self, steps: int) -> dict[str, Any]:
        """The epoch's row, plus ``actor_restarts`` and ``server_busy``: the fraction of the epoch's step
        time the server spent working (applying, issuing, sending) rather than waiting for gradients; near
        1, the server is the bottleneck and more actors will not help; and ``job_times``, the epoch's applied
        jobs as a trace's rows (``schedules/trace.py``: worker, job, steps, seconds, slot, node)."""
        waited = self.traffic.waiting_s
        row = super().run_epoch(steps)
        stepping = self.step_seconds
        busy = 1.0 - (self.traffic.waiting_s - waited) / stepping if stepping > 0 else math.nan
        job_times = [(*job, self._node_of(job[-1])) for job in self.master.take_job_times()]
        return dict(
            row,
            actor_restarts=self.restarts.count,
            server_busy=busy,
            jobs_per_call=self.dispatcher.per_call,
            job_times=job_times,
        )

    def _node_of(self, slot: int) -> str:
        """The node id of ``slot``'s actor ("" where not known)."""
        return (self.fleet.nodes[slot] or "") if 0 <= slot < len(self.fleet.nodes) else ""

    def evaluate(self) -> tuple[float, float]:
        params, bn_stats = self.master.rule.params.cpu().numpy(), self.master.bn_stats.cpu().numpy()
        self.traffic.bytes_to_workers += params.nbytes + bn_stats.nbytes
        self.traffic.bytes_through_server += params.nbytes + bn_stats.nbytes
        params_ref, bn_stats_ref = ray.put(params), ray.put(bn_stats)
        while True:
            slot = self.dispatcher.least_loaded()
            try:
                return ray.get(self.fleet.actors[slot].evaluate.remote(bn_stats_ref, params_ref))
            except ray.exceptions.RayActorError as error:  # its jobs in flight are lost too: sent again
                self.dispatcher.replace_slot(slot, one_line(error))

    def load_state_dict(self, state: dict) -> None:
        """Restore the master (and the actors' worker-side state); the jobs in flight are dropped and the
        restored outstanding jobs sent out."""
        super().load_state_dict(state)
        self.resend_outstanding()

    def resend_outstanding(self) -> None:
        """Drop the jobs in flight and send the master's outstanding jobs again (after a restore)."""
        self.dispatcher.clear()
        for worker in sorted(self.master.outstanding):
            self.dispatcher.dispatch(self.master.outstanding[worker])

    def worker_side_state(self, next_batches: dict[int, int]) -> dict:
        """Merged from every actor; each call runs after the jobs already sent to that actor."""
        state: dict = {}
        for part in ray.get([actor.worker_side_state.remote(next_batches) for actor in self.fleet.actors]):
            state.update(
                {
                    w: (b, {k: torch.from_numpy(v.copy()) for k, v in tensors.items()})
                    for w, (b, tensors) in part.items()
                }
            )
        return state

    def load_worker_side_state(self, state: dict) -> None:
        ray.get(
            [
                actor.load_worker_side_state.remote(
                    {
                        w: (b, {k: v.cpu().numpy() for k, v in tensors.items()})
                        for w, (b, tensors) in state.items()
                        if self.dispatcher.home_slot(w) == slot
                    }
                )
                for slot, actor in enumerate(self.fleet.actors)
            ]
        )

    def close(self, reusable: bool = False) -> None:
        self.fleet.kill()


RemoteParameterServer = ray.remote(ParameterServer)
