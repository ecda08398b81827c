"""The Ray executor with ``server_shards`` = K > 1: a sequencer actor and K ``ShardActor``s hold one trial's θ.

The ``ShardedParameterServer`` is the ``ParameterServer`` (the same dispatcher, actor fleet, replacement of
dead gradient actors, epochs and checkpoints) whose master is a ``ShardedMaster`` (``engine/shards.py``):
it decides the order of updates and keeps every scalar, and its shards hold θ and the rule's state in K
coordinate ranges. Per update:

* the sequencer asks each shard for its slice of the next point (``point_for``) and hands the K references
  to a gradient actor, which assembles the point (the data goes shard -> actor);
* the actor cuts its gradient at the same places and returns K slices plus a small (BatchNorm statistics,
  loss, seconds); the sequencer waits for the small one only and passes each slice's reference to its
  shard's ``apply`` (the data goes actor -> shard);
* each shard applies its calls in the order the sequencer made them (Ray runs one caller's calls to an
  actor in order), so every shard sees the same sequence of updates a single server would.

So nothing d-sized passes through the sequencer per update (``Traffic.bytes_through_server`` counts what
does: the small result, and each gradient's partial sums of squares at the epoch's end). A checkpoint joins
the shards' states into one server's format (d-sized, once per checkpoint), so it restores with any K.

A shard actor that dies is recovered within the trial: at the start of every epoch each shard snapshots its
state into the object store (owned by the sequencer, so it outlives the shard's process); on a shard's loss
a new shard starts (bounded by ``actor_start_timeout_s``, else the trial fails with one line), every shard
and the sequencer go back to the epoch's start and the epoch runs again, to the same numbers. A rule with
worker-side state, whose momenta live on the gradient actors, cannot go back and fails in one line (resume
from the last checkpoint), as when one of its gradient actors dies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import ray
import torch

from dana_ray.config import TrialConfig
from dana_ray.core.cli import one_line
from dana_ray.engine.build import build_rule, build_sequencer
from dana_ray.engine.dispatch import SlotLost
from dana_ray.engine.loop import params_sha256
from dana_ray.engine.master import GradientResult, Job, Master
from dana_ray.engine.ray.actors import as_tensor, where_am_i
from dana_ray.engine.ray.devices import hide_unreserved_gpus
from dana_ray.engine.ray.fleet import await_running, place, server_words
from dana_ray.engine.ray.server import ParameterServer
from dana_ray.engine.ray.transport import RayTransport
from dana_ray.engine.shards import ParameterShard, Sharded, ShardedMaster, ShardLost, shard_bounds
from dana_ray.engine.telemetry import Sink
from dana_ray.engine.threads import torch_threads, use_threads


class ShardActor:
    """θ[start:stop] of one trial and the rule's state for those coordinates (``shards.ParameterShard``)."""

    def __init__(self, config: dict, start: int, stop: int, steps_per_epoch: int, params: np.ndarray | None) -> None:
        hide_unreserved_gpus()  # first: see ``devices``
        self.reset(config, start, stop, steps_per_epoch, params)

    def reset(self, config: dict, start: int, stop: int, steps_per_epoch: int, params: np.ndarray | None) -> None:
        """Serve a trial: its rule over ``params[start:stop]`` (None: zeros, to be loaded from a snapshot)."""
        cfg = TrialConfig.received(config)
        use_threads(torch_threads(cfg.section("ray").server_cpus))  # memory-bound: every reserved core
        initial = torch.from_numpy(params[start:stop].copy()) if params is not None else torch.zeros(stop - start)
        self.shard = ParameterShard(build_rule(cfg, initial, steps_per_epoch))

    def ready(self) -> dict[str, str]:
        return where_am_i()

    def point_for(self, worker: int) -> np.ndarray:
        # the buffer is reused for a later point, after Ray has copied this one out (at return)
        return self.shard.point_for(worker).numpy()

    def sent_point(self, worker: int) -> np.ndarray:
        return self.shard.sent_point(worker).numpy()

    def apply(self, worker: int, grad: np.ndarray, delay: int) -> float:
        return self.shard.apply(worker, as_tensor(grad), delay)

    @ray.method(num_returns=2)
    def apply_then_point(self, worker: int, grad: np.ndarray, delay: int) -> tuple[float, np.ndarray]:
        """``apply``, then ``point_for`` the same worker: an asynchronous rule's step in one call, not two."""
        return self.apply(worker, grad, delay), self.point_for(worker)

    def params(self) -> np.ndarray:
        return self.shard.rule.params.numpy()

    def state_dict(self) -> dict:
        return self.shard.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.shard.load_state_dict(state)


RemoteShardActor = ray.remote(ShardActor)


class RayShards:
    """The sequencer's ``ShardSet``: calls to its shard actors; a dead shard raises ``ShardLost``."""

    def __init__(self, server: ShardedParameterServer) -> None:
        self.server = server
        self.bounds = server.bounds

    def point_for(self, worker: int) -> tuple[ray.ObjectRef, ...]:
        return tuple(shard.point_for.remote(worker) for shard in self.server.shards)

    def sent_point(self, worker: int) -> tuple[ray.ObjectRef, ...]:
        return tuple(shard.sent_point.remote(worker) for shard in self.server.shards)

    def apply(self, worker: int, grads: tuple[ray.ObjectRef, ...], delay: int) -> list[ray.ObjectRef]:
        return [shard.apply.remote(worker, grad, delay) for shard, grad in zip(self.server.shards, grads)]

    def apply_then_point(
        self, worker: int, grads: tuple[ray.ObjectRef, ...], delay: int
    ) -> tuple[list[ray.ObjectRef], tuple[ray.ObjectRef, ...]]:
        calls = [shard.apply_then_point.remote(worker, grad, delay) for shard, grad in zip(self.server.shards, grads)]
        return [squares for squares, _ in calls], tuple(point for _, point in calls)

    def squares(self, handles: list[list[ray.ObjectRef]]) -> list[float]:
        values = self.server.get([ref for refs in handles for ref in refs])
        self.server.traffic.bytes_through_server += 8 * len(values)
        k = len(self.server.shards)
        return [sum(values[i : i + k]) for i in range(0, len(values), k)]

    def states(self) -> list[dict]:
        return self.server.get([shard.state_dict.remote() for shard in self.server.shards])

    def load_states(self, states: list[dict]) -> None:
        self.server.get([shard.load_state_dict.remote(state) for shard, state in zip(self.server.shards, states)])


class ShardedTransport(RayTransport):
    """The transport of a sequencer: a job's point goes as its shards' slices (the actor assembles it), and a
    result comes back as K gradient slices, left where the actor put them for their shards to take, and a
    small (BatchNorm statistics, loss, seconds), the only part the sequencer fetches."""

    def __init__(self, server: ShardedParameterServer) -> None:
        super().__init__(server.fleet, server.traffic, server.node)
        self.server = server

    def send(self, slot: int, jobs: list[Job]) -> list[Any]:
        k = self.server.num_shards
        parts = [ref for job in jobs for ref in job.point.parts]
        refs = (
            self.fleet.actors[slot]
            .compute_many.options(num_returns=len(jobs) * (k + 1))
            .remote([j.worker for j in jobs], [j.batch for j in jobs], *parts, shards=k, lrs=[j.lr for j in jobs])
        )
        return [tuple(refs[i * (k + 1) : (i + 1) * (k + 1)]) for i in range(len(jobs))]

    def fetch(self, handle: Any, slot: int) -> GradientResult:
        """Waits for the job's small result only; its gradient slices stay where the actor put them until
        their shards take them."""
        try:
            bn_stats, loss, seconds = ray.get(handle[-1])
        except ray.exceptions.RayActorError as error:
            raise self.server.lost_shard(error) or SlotLost(slot, one_line(error)) from None
        self.traffic.bytes_through_server += bn_stats.nbytes + 16
        return GradientResult(Sharded(handle[:-1], self.server.num_params * 4), as_tensor(bn_stats), loss, seconds)

    def first_ready(self, handles: list[Any]) -> Any:
        by_result = {handle[-1]: handle for handle in handles}
        ready, _ = ray.wait(list(by_result), num_returns=1)
        return by_result[ready[0]]

    def is_remote(self, slot: int) -> bool:
        return False  # what the sequencer fetches is small: nothing to pull ahead


class ShardedParameterServer(ParameterServer):
    """A trial's sequencer, owner of its K shard actors and its gradient actors (see the module docstring)."""

    master: ShardedMaster

    def __init__(
        self,
        config: dict,
        name: str,
        num_actors: int,
        worker_class: Any = None,
        placement_group: Any = None,
        metrics: Callable[[], Sink] | None = None,
        shard_class: Any = None,
    ) -> None:
        """As ``ParameterServer``; ``shard_class``: the remote class of the shards (default ``ShardActor``)."""
        super().__init__(config, name, num_actors, worker_class, placement_group, metrics)
        self.placement_group = placement_group
        self.num_shards = self.cfg.section("ray").server_shards
        self.shard_class = shard_class or RemoteShardActor
        self.shards: list[Any] = []
        self.shard_nodes: list[str | None] = [None] * self.num_shards

    def _transport(self) -> RayTransport:
        return ShardedTransport(self)

    def _build_master(self, info: dict[str, Any]) -> Master:
        self.bounds = shard_bounds(self.num_params, self.num_shards)
        initial = self.fleet.actors[0].initial_params.remote()  # θ0 goes from the actor to the shards directly
        args = [
            (self.cfg.to_dict(), start, stop, self.steps_per_epoch, initial)
            for start, stop in zip(self.bounds, self.bounds[1:])
        ]
        if self.shards:  # a new trial for pooled shards
            ray.get([shard.reset.remote(*a) for shard, a in zip(self.shards, args)])
        else:
            self.shards = [self._spawn_shard(k, *a) for k, a in enumerate(args)]
            self._await_shards(range(self.num_shards), "to start the trial")
        return build_sequencer(
            self.cfg, RayShards(self), torch.tensor(info["bn_stats"]), info["bn_momentum"], self.steps_per_epoch
        )

    def _shard_name(self, k: int) -> str:
        return f"{self.name}/Shard-{k}" + self.restarts.suffix()

    def _spawn_shard(self, k: int, *args: Any) -> Any:
        """Shard ``k``: in its bundle of the trial's placement group (SPREAD over the cluster's nodes), else
        spread by Ray's SPREAD scheduling, so shards land on distinct nodes where there are several."""
        if self.placement_group is not None:
            where = place(self.placement_group, self.fleet.layout.shard(self.placement_group.bundle_count, k))
        else:
            where = {"scheduling_strategy": "SPREAD"}
        own = self.cfg.section("ray")
        return self.shard_class.options(
            name=self._shard_name(k), num_cpus=own.server_cpus, resources=dict(own.server_resources), **where
        ).remote(*args)

    def _await_shards(self, ks: Any, why: str) -> None:
        """Wait at most ``actor_start_timeout_s`` for the shards in ``ks``; then fail with one line."""
        own = self.cfg.section("ray")
        await_running(
            self.shards, self.shard_nodes, self._shard_name, ks, server_words(own), why, own.actor_start_timeout_s
        )

    def get(self, refs: list[Any]) -> list:
        """``ray.get``, a dead shard's error raised as ``ShardLost``."""
        try:
            return ray.get(refs)
        except ray.exceptions.RayActorError as error:
            raise self.lost_shard(error) or error from None

    def lost_shard(self, error: Exception) -> ShardLost | None:
        """The ``ShardLost`` an actor error means, if the dead actor is one of the shards."""
        dead = getattr(error, "actor_id", None)
        for k, shard in enumerate(self.shards):
            if dead is not None and shard._actor_id.hex() == dead:
                return ShardLost(k, one_line(error))
        return None

    # -- the epoch, with a lost shard recovered -----------------------------------------------------------

    def run_epoch(self, steps: int) -> dict[str, Any]:
        sequencer = self.master.sequencer_state()
        snapshot = [shard.state_dict.remote() for shard in self.shards]  # after every call made so far
        while True:
            try:
                return super().run_epoch(steps)
            except ShardLost as lost:
                self._recover(lost, sequencer, snapshot)

    def _recover(self, lost: ShardLost, sequencer: dict, snapshot: list[Any]) -> None:
        """A new shard in ``lost.shard``'s place; every shard and the sequencer back to the epoch's start."""
        who = f"{self.name}/Shard-{lost.shard}"
        self.restarts.spend(
            who,
            lost.cause,
            f"; rule {self.cfg.algorithm!r} keeps worker-side state on the gradient "
            f"actors, which cannot go back to the epoch's start",
        )
        self.traffic.actor_restarts += 1
        ray.kill(self.shards[lost.shard])
        start, stop = self.bounds[lost.shard], self.bounds[lost.shard + 1]
        self.shards[lost.shard] = self._spawn_shard(
            lost.shard, self.cfg.to_dict(), start, stop, self.steps_per_epoch, None
        )
        self._await_shards([lost.shard], f"to replace its predecessor, which died ({lost.cause})")
        try:
            ray.get([shard.load_state_dict.remote(state) for shard, state in zip(self.shards, snapshot)])
        except ray.exceptions.RayError as error:  # the dead shard's snapshot: never taken, or gone with its node
            when = (
                "at the start of an epoch, before its snapshot was taken"
                if isinstance(error, ray.exceptions.RayActorError)
                else f"and its epoch-start snapshot is lost with its node ({one_line(error)})"
            )
            raise RuntimeError(f"{who} died {when}; the trial goes on from its last checkpoint") from None
        self.master.load_sequencer_state(sequencer)
        self.resend_outstanding()

    # -- what the driver asks of θ ----------------------------------------------------------------------

    def evaluate(self) -> tuple[float, float]:
        bn_stats = self.master.bn_stats.cpu().numpy()
        self.traffic.bytes_through_server += bn_stats.nbytes
        while True:
            slot = self.dispatcher.least_loaded()
            params = [shard.params.remote() for shard in self.shards]
            try:
                return ray.get(self.fleet.actors[slot].evaluate.remote(bn_stats, *params))
            except ray.exceptions.RayActorError as error:
                lost = self.lost_shard(error)
                if lost is not None:
                    raise lost from None
                self.dispatcher.replace_slot(slot, one_line(error))

    def params_sha256(self) -> str:
        """SHA-256 of θ's float32 bytes, the shards' slices in order (equal to one server's)."""
        return params_sha256(*self.get([shard.params.remote() for shard in self.shards]))

    def close(self, reusable: bool = False) -> None:
        super().close(reusable)
        for shard in self.shards:
            ray.kill(shard)


RemoteShardedParameterServer = ray.remote(ShardedParameterServer)
