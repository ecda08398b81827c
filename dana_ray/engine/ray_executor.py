"""The Ray executor: a ``ParameterServer`` actor and a pool of ``Worker`` actors run a trial across machines.

* ``Worker`` (P actors, ``num_actors``): a model replica and the data, on a GPU where ``gpus_per_actor`` > 0.
  It computes the gradient of whichever logical worker a job names (that worker's own batch stream), so
  N logical workers run on any P: 32 workers on 1, 4 or 32 actors.
* ``ParameterServer`` (one per trial; with ``server_shards`` > 1 a sequencer and K shard actors,
  ``engine/ray_shards.py``): the ``Master`` (rule, schedule, BatchNorm statistics, step, jobs), a
  ``Dispatcher`` (``engine/dispatch.py``: which actor gets which job, grouping, resends, pulling results
  ahead) and the Ray side of it: the server is the dispatcher's ``Transport`` over its actor fleet (send a
  call, fetch a result, wait for the first, replace a dead actor). Results are applied in the order the
  schedule names, waiting for that worker's gradient even if others arrive first; with
  ``schedule="arrival"``, whichever gradient arrives first.
* Parameters and gradients travel as flat float32 numpy buffers through the object store, server to actor
  and back (the server ``ray.put``s a point once and passes the reference; numpy arrives zero-copy). The
  driver only calls ``run_epoch`` once per epoch; nothing per step passes through it.
* A ``Worker`` that dies is replaced (up to ``max_actor_restarts`` times per trial) and the jobs it held are
  sent again. A job is fully determined by (seed, worker, batch, point), so the master applies each job
  exactly once whatever happened to the actor, and the run's numbers do not change.

With a seeded schedule the numbers equal the local executor's for any P, given the same ``cpu_threads``
(CPU kernels may sum in a different order with another thread count).
"""

from __future__ import annotations

import math
import socket
import time
import uuid
import warnings
from typing import Any

import numpy as np
import ray
import torch

from dana_ray.checks import resource_words
from dana_ray.config import Section, TrialConfig
from dana_ray.engine.build import build_master, build_worker, resolve_device
from dana_ray.engine.executor import Executor, MasterLoop
from dana_ray.engine.dispatch import Dispatcher, SlotLost, run_steps
from dana_ray.engine.master import GradientResult, Job, Master
from dana_ray.engine.telemetry import Traffic
from dana_ray.metrics import RayMetrics


#: The label every Ray node carries with its id (Ray's ``ray.util.placement_group.NODE_ID_LABEL_KEY``).
NODE_ID_LABEL = "ray.io/node-id"
#: Points up to this size travel inside the task itself, like Ray's own small arguments (its 100 KiB
#: ``max_direct_call_object_size``): cheaper than an object-store round trip for small models.
INLINE_BYTES = 100 * 1024


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor over ``array``'s memory, without a copy; object-store arrays are read-only, which is fine for
    everything the engine does with a received point or gradient (it only reads them)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)



def ray_options(cfg: TrialConfig) -> Section:
    """The config's ``ray:`` section: this executor's own options (``executors.RAY_OPTIONS``)."""
    return cfg.section("ray")


class Worker:
    """A gradient actor: one model replica serving any logical worker's jobs."""

    def __init__(self, config: dict, index: int) -> None:
        self._pinned: dict[tuple[int, int], torch.Tensor] = {}  # (slot, size) -> page-locked host buffer
        self.reset(config, index)

    def reset(self, config: dict, index: int) -> None:
        """Serve a new trial: its model replica and worker side; the data set is kept if it is the same."""
        cfg = TrialConfig.received(config)
        torch.set_num_threads(cfg.compute.cpu_threads or max(1, round(cfg.compute.cpus_per_actor)))
        self.index, self.device = index, resolve_device(cfg.compute.device)
        self.vmap_jobs = cfg.compute.vmap_jobs
        if getattr(self, "worker", None) is not None:
            self.worker.close()
        self.worker = build_worker(cfg, self.device, decode_threads=max(1, round(cfg.compute.cpus_per_actor)))

    def _to_host(self, tensors: list[torch.Tensor]) -> list[np.ndarray]:
        """Results as numpy arrays for the object store. On the CPU: views, no copy. On a GPU: one DMA each
        into a reused page-locked host buffer (a pageable destination would add the driver's staging copy);
        Ray then copies each buffer into the object store when the call returns, before the buffers are
        reused by the next call."""
        if self.device.type != "cuda":
            return [t.numpy() for t in tensors]
        out = []
        for slot, t in enumerate(tensors):
            key = (slot, t.numel())
            if key not in self._pinned:
                self._pinned[key] = torch.empty(t.numel(), dtype=t.dtype, pin_memory=True)
            out.append(self._pinned[key].copy_(t.reshape(-1)).numpy())
        torch.cuda.current_stream(self.device).synchronize()
        return out

    def ready(self) -> dict[str, str]:
        """Where this actor runs: its node's id and host name."""
        return {"node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname()}

    def describe(self, with_params: bool = True) -> dict[str, Any]:
        """The model's initial state and the data's shape, for the server to build the master from (a
        sequencer asks without θ: its shards take it from ``initial_params``)."""
        params, bn_stats = self.worker.model.initial_state()
        info = {"bn_stats": bn_stats.cpu().numpy(), "bn_momentum": self.worker.model.bn_momentum,
                "num_classes": self.worker.data.num_classes, "steps_per_epoch": self.worker.steps_per_epoch,
                "num_params": params.numel()}
        return dict(info, params=params.cpu().numpy()) if with_params else info

    def initial_params(self) -> np.ndarray:
        """The model's initial θ, flat (for a sharded server's shards, each of which takes its range)."""
        return self.worker.model.initial_state()[0].cpu().numpy()

    def _assembled(self, parts: tuple[np.ndarray, ...]) -> torch.Tensor:
        """One point on this actor's device from its shards' slices (in coordinate order)."""
        if len(parts) == 1:
            return as_tensor(parts[0]).to(self.device)
        return torch.cat([as_tensor(p) for p in parts]).to(self.device)

    def compute(self, worker: int, batch: int, point: np.ndarray, lr: float = 0.0) -> tuple[np.ndarray, np.ndarray, float, float]:
        """(gradient, BatchNorm statistics, loss, seconds computing it); ``lr``: η when the job was sent."""
        job = Job(worker, batch, as_tensor(point).to(self.device), sent_version=-1, lr=lr)
        result = self.worker.compute(job)
        grad, bn_stats = self._to_host([result.grad, result.bn_stats])
        return grad, bn_stats, result.loss, result.seconds

    def compute_many(self, workers: list[int], batches: list[int], *points: np.ndarray, shards: int = 1,
                     lrs: list[float] | None = None) -> tuple:
        """Several jobs sent in one call (``jobs_per_call``), computed ``vmap_jobs`` at a time (1: one by one,
        exactly as ``compute``); called with ``num_returns=len(workers)``, so each job's result is its own
        object.

        ``shards`` = K > 1 (a sharded server): each job's point comes as K slices, assembled here, and its
        gradient goes back cut at the same places: per job K gradient slices, then (BatchNorm statistics,
        loss, seconds), each its own object (``num_returns=len(workers) * (K + 1)``), so each slice can go
        to its shard without passing through the sequencer."""
        parts = [points[k * shards:(k + 1) * shards] for k in range(len(workers))]
        lrs = lrs if lrs is not None else [0.0] * len(workers)
        jobs = [Job(w, b, self._assembled(p), sent_version=-1, lr=lr)
                for w, b, p, lr in zip(workers, batches, parts, lrs)]
        results = [r for k in range(0, len(jobs), self.vmap_jobs)
                   for r in self.worker.compute_many(jobs[k:k + self.vmap_jobs])]
        host = self._to_host([t for r in results for t in (r.grad, r.bn_stats)])
        if shards == 1:
            return tuple((host[2 * k], host[2 * k + 1], r.loss, r.seconds) for k, r in enumerate(results))
        out: list = []
        for k, r in enumerate(results):
            grad, cut = host[2 * k], np.cumsum([len(p) for p in parts[k]])[:-1]
            out += [*np.split(grad, cut), (host[2 * k + 1], r.loss, r.seconds)]
        return tuple(out)

    def evaluate(self, bn_stats: np.ndarray, *params: np.ndarray) -> tuple[float, float]:
        """(test error %, test loss) at θ, given whole or as its shards' slices."""
        return self.worker.evaluate(self._assembled(params), as_tensor(bn_stats).to(self.device))

    def worker_side_state(self, next_batches: dict[int, int]) -> dict[int, tuple[int, dict[str, np.ndarray]]]:
        return {w: (b, {k: v.cpu().numpy() for k, v in tensors.items()})
                for w, (b, tensors) in self.worker.worker_side_state(next_batches).items()}

    def load_worker_side_state(self, state: dict[int, tuple[int, dict[str, np.ndarray]]]) -> None:
        self.worker.load_worker_side_state({w: (b, {k: as_tensor(v) for k, v in tensors.items()})
                                            for w, (b, tensors) in state.items()})


RemoteWorker = ray.remote(Worker)


class ParameterServer(MasterLoop):
    """The master of one trial and the owner of its Worker actors."""

    def __init__(self, config: dict, name: str, num_actors: int, worker_class: Any = None,
                 placement_group: Any = None, export_metrics: bool = False) -> None:
        """``worker_class``: the remote class of the gradient actors (default ``Worker``; benchmarks pass a
        stub with the same methods to time the server alone). ``placement_group``: the trial's reservation
        (``[trial process, this server, actor 0, ...]``; Tune leaves the trial process's bundle out when it is
        empty), or None outside Tune. ``export_metrics``: export each trial's live figures to Ray's metrics
        agent, tagged with the trial's name (``dana_ray.metrics``)."""
        self.export_metrics = export_metrics
        self._serve(config, name)
        self.num_actors = num_actors
        self.worker_class = worker_class or RemoteWorker
        self.placement_group = placement_group
        self.nodes: list[str | None] = [None] * num_actors  # the node each actor slot's actor runs on
        self.node = ray.get_runtime_context().get_node_id()  # this server's
        self.lost_nodes: set[str] = set()  # nodes where an actor died: replacements prefer other nodes

    def start(self) -> dict[str, Any]:
        """Start the actors, build the master from actor 0's model, issue the first jobs."""
        self.actors = [self._spawn(k) for k in range(self.num_actors)]
        self._await_ready(range(self.num_actors), "to start the trial")
        return self._begin()

    def reset(self, config: dict, name: str) -> dict[str, Any]:
        """Serve a new trial with the same actors (a pool: no process starts, the data stays loaded): reset
        each actor to the new config, then begin as ``start`` does. The previous trial's jobs still in flight
        finish first and are dropped."""
        self._serve(config, name)
        ray.get([actor.reset.remote(config, k) for k, actor in enumerate(self.actors)])
        return self._begin()

    def _serve(self, config: dict, name: str) -> None:
        """Take trial ``name``'s config, with its counters at zero."""
        self.cfg = TrialConfig.received(config)
        # The update is memory-bound: use every core reserved for the server (Ray starts actors with one
        # torch thread whatever num_cpus).
        torch.set_num_threads(max(1, round(ray_options(self.cfg).server_cpus)))
        self.name, self.restarts = name, 0
        self.traffic = Traffic()  # this trial's running totals (restarts while starting included)

    #: Server shards: 0 here (θ is in this process); a ``ShardedParameterServer`` has K >= 2.
    num_shards = 0

    def _begin(self) -> dict[str, Any]:
        info = ray.get(self.actors[0].describe.remote(with_params=not self.num_shards))
        self.steps_per_epoch, self.num_classes = info["steps_per_epoch"], info["num_classes"]
        self.num_params = info["num_params"]
        self.master = self._build_master(info)
        self.watch(RayMetrics(self.name, "ray") if self.export_metrics else None)
        # A rule with worker-side state keeps logical worker i on actor slot i % P, which holds its state;
        # otherwise each job goes to the least-loaded actor.
        self._call_overhead_s = None
        self.dispatcher = Dispatcher(self, per_call=ray_options(self.cfg).jobs_per_call,
                                     vmap_jobs=self.cfg.compute.vmap_jobs, num_workers=self.cfg.num_workers,
                                     sticky=self.master.rule.has_worker_side(), traffic=self.traffic)
        for job in self.master.start():
            self.dispatcher.dispatch(job)
        return {"steps_per_epoch": self.steps_per_epoch, "num_classes": self.num_classes,
                "num_params": self.num_params, "num_actors": self.num_actors}

    def _build_master(self, info: dict[str, Any]) -> Master:
        return build_master(self.cfg, torch.tensor(info["params"]), torch.tensor(info["bn_stats"]),
                            info["bn_momentum"], self.steps_per_epoch)

    # -- the loop ---------------------------------------------------------------------------------------------

    def run_steps(self, steps: int) -> None:
        """Apply ``steps`` gradients; ``traffic.waiting_s`` accumulates the time spent blocked on results."""
        run_steps(self.master, self.dispatcher, self.telemetry, steps)

    def run_epoch(self, steps: int) -> dict[str, Any]:
        """The epoch's row, plus ``actor_restarts`` and ``server_busy``: the fraction of the epoch's step
        time the server spent working (applying, issuing, sending) rather than waiting for gradients; near
        1, the server is the bottleneck and more actors will not help."""
        waited = self.traffic.waiting_s
        row = super().run_epoch(steps)
        stepping = self.step_seconds
        busy = 1.0 - (self.traffic.waiting_s - waited) / stepping if stepping > 0 else math.nan
        return dict(row, actor_restarts=self.restarts, server_busy=busy, jobs_per_call=self.dispatcher.per_call)

    def evaluate(self) -> tuple[float, float]:
        params, bn_stats = self.master.rule.params.cpu().numpy(), self.master.bn_stats.cpu().numpy()
        self.traffic.bytes_to_workers += params.nbytes + bn_stats.nbytes
        self.traffic.bytes_through_server += params.nbytes + bn_stats.nbytes
        params, bn_stats = ray.put(params), ray.put(bn_stats)
        while True:
            slot = self.dispatcher.least_loaded()
            try:
                return ray.get(self.actors[slot].evaluate.remote(bn_stats, params))
            except ray.exceptions.RayActorError as error:  # its jobs in flight are lost too: sent again
                self.dispatcher.replace_slot(slot, cause_of(error))

    def load_state_dict(self, state: dict) -> None:
        """Restore the master (and the actors' worker-side state); the jobs in flight are dropped and the
        restored outstanding jobs sent out."""
        super().load_state_dict(state)
        self.dispatcher.clear()
        for worker in sorted(self.master.outstanding):
            self.dispatcher.dispatch(self.master.outstanding[worker])

    def worker_side_state(self, next_batches: dict[int, int]) -> dict:
        """Merged from every actor; each call runs after the jobs already sent to that actor."""
        state: dict = {}
        for part in ray.get([actor.worker_side_state.remote(next_batches) for actor in self.actors]):
            state.update({w: (b, {k: torch.from_numpy(v.copy()) for k, v in tensors.items()})
                          for w, (b, tensors) in part.items()})
        return state

    def load_worker_side_state(self, state: dict) -> None:
        ray.get([actor.load_worker_side_state.remote(
            {w: (b, {k: v.cpu().numpy() for k, v in tensors.items()}) for w, (b, tensors) in state.items()
             if self.dispatcher.home_slot(w) == slot})
            for slot, actor in enumerate(self.actors)])

    def close(self, reusable: bool = False) -> None:
        for actor in self.actors:
            ray.kill(actor)

    # -- the dispatcher's transport: calls to the actor fleet ---------------------------------------------------

    @property
    def num_slots(self) -> int:
        return self.num_actors

    def send(self, slot: int, jobs: list[Job]) -> list[ray.ObjectRef]:
        points = []
        for job in jobs:
            point = job.point.cpu().numpy()
            # one copy into the object store (the actor maps it without copying); small points go inline
            points.append(ray.put(point) if point.nbytes > INLINE_BYTES else point)
            self.traffic.bytes_through_server += point.nbytes
        actor = self.actors[slot]
        if len(jobs) == 1:
            return [actor.compute.remote(jobs[0].worker, jobs[0].batch, points[0], jobs[0].lr)]
        return actor.compute_many.options(num_returns=len(jobs)).remote(
            [j.worker for j in jobs], [j.batch for j in jobs], *points, lrs=[j.lr for j in jobs])

    def fetch(self, handle: ray.ObjectRef, slot: int) -> GradientResult:
        try:
            grad, bn_stats, loss, seconds = ray.get(handle)
        except ray.exceptions.RayActorError as error:
            raise SlotLost(slot, cause_of(error)) from None
        self.traffic.bytes_through_server += grad.nbytes + bn_stats.nbytes + 16
        return GradientResult(as_tensor(grad), as_tensor(bn_stats), loss, seconds)

    def call_overhead_s(self) -> float:
        """A Ray call's round trip to a gradient actor, without work: the median of 5 (measured once)."""
        if self._call_overhead_s is None:
            times = []
            for _ in range(5):
                started = time.perf_counter()
                ray.get(self.actors[0].ready.remote())
                times.append(time.perf_counter() - started)
            self._call_overhead_s = sorted(times)[2]
        return self._call_overhead_s

    def first_ready(self, handles: list[ray.ObjectRef]) -> ray.ObjectRef:
        ready, _ = ray.wait(handles, num_returns=1)
        return ready[0]

    def prefetch(self, handles: list[ray.ObjectRef]) -> list[ray.ObjectRef]:
        """Start copying every in-flight result that is ready on another node to this one, without waiting.

        A result stays on its actor's node until someone asks for it, and ``ray.get`` pulls one object at a
        time: taken in schedule order, each remote gradient's transfer would start only when its turn comes,
        one after another. A non-blocking ``ray.wait(fetch_local=True)`` over the results in flight starts
        their pulls together, so they arrive while the server applies the ones before them (across two
        nodes, at 1 MB a gradient: 3-5x the updates/s, ``benchmarks/ray_executor.py --nodes 2``).
        """
        ready, _ = ray.wait(handles, num_returns=len(handles), timeout=0, fetch_local=True)
        return ready

    def is_remote(self, slot: int) -> bool:
        return self.nodes[slot] != self.node

    def replace(self, slot: int, cause: str) -> None:
        """Replace the dead actor in ``slot`` (not on the node it died on, where another has room); the
        dispatcher then sends its jobs again."""
        self._count_restart(f"{self.name}/Worker-{slot}", cause,
                            f" holding the worker-side state of rule {self.cfg.algorithm!r} (its logical workers' "
                            f"momenta), which cannot be rebuilt")
        ray.kill(self.actors[slot])
        lost = self.nodes[slot]
        if lost is not None:
            self.lost_nodes.add(lost)
        self.actors[slot] = self._spawn(slot)
        self._await_ready([slot], f"to replace its predecessor, which died ({cause})")

    def _count_restart(self, who: str, cause: str, worker_side_loss: str) -> None:
        """Count one replacement of the dead actor ``who``; or fail the trial in one line when the rule keeps
        worker-side state (what is lost: ``worker_side_loss``) or ``max_actor_restarts`` are used up."""
        if self.dispatcher.sticky:
            raise RuntimeError(f"{who} died{worker_side_loss}; resume the trial from its last checkpoint: {cause}")
        most = ray_options(self.cfg).max_actor_restarts
        if self.restarts >= most:
            raise RuntimeError(f"{who} died and max_actor_restarts={most} replacements are used up: {cause}")
        self.restarts += 1

    def _spawn(self, slot: int) -> ray.actor.ActorHandle:
        name = self._actor_name(slot)
        if self.placement_group is not None:  # its bundle decides (Ray re-places a lost node's bundles)
            first = server_bundle(self.placement_group, self.num_actors, self.num_shards) + 1 + self.num_shards
            where = in_bundle(self.placement_group, first + slot)
        elif self.lost_nodes:  # not where an actor died (its node may be dead, though not yet declared so)
            where = {"label_selector": {NODE_ID_LABEL: f"!in({','.join(sorted(self.lost_nodes))})"},
                     "fallback_strategy": [{"label_selector": {}}]}
        else:
            where = {}
        return self.worker_class.options(name=name, num_cpus=self.cfg.compute.cpus_per_actor, num_gpus=self.cfg.compute.gpus_per_actor,
                                         **where).remote(self.cfg.to_dict(), slot)

    def _actor_name(self, slot: int) -> str:
        """``<trial>/Worker-k``, and ``.r`` for the r-th replacement of the trial (the dashboard's name)."""
        return f"{self.name}/Worker-{slot}" + (f".{self.restarts}" if self.restarts else "")

    def _await_ready(self, slots: Any, why: str) -> None:
        """Wait until the gradient actors in ``slots`` run (see ``_await_running``)."""
        compute = self.cfg.compute
        wants = f"{compute.cpus_per_actor:g} CPU" + (f", {compute.gpus_per_actor:g} GPU" if compute.gpus_per_actor else "")
        await_running(self.actors, self.nodes, self._actor_name, slots, wants, why,
                      ray_options(self.cfg).actor_start_timeout_s)


def await_running(actors: list, nodes: list, name_of: Any, slots: Any, wants: str, why: str, timeout_s: float) -> None:
    """Wait until ``actors[k]`` for k in ``slots`` run (each reports its node into ``nodes[k]``), at most
    ``timeout_s``; then kill those still waiting and fail with one message naming ``name_of(k)`` and what it
    ``wants`` (a cluster with no room would otherwise keep the trial waiting forever, silently)."""
    refs = {actors[k].ready.remote(): k for k in slots}
    ready, missing = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    for ref in ready:
        k = refs[ref]
        try:
            nodes[k] = ray.get(ref)["node_id"]
        except ray.exceptions.RayActorError as error:
            raise RuntimeError(f"{name_of(k)} could not start: {cause_of(error)}") from None
    if missing:
        k = refs[missing[0]]
        for ref in missing:
            ray.kill(actors[refs[ref]])
        raise RuntimeError(
            f"{name_of(k)} was not running {timeout_s:g} s after it was asked {why}: no live node has room for it "
            f"({wants}). The trial stops here; under Tune it resumes from its last checkpoint once the cluster has "
            f"room (tune.max_failures)")


def server_words(own: Any, holds_params: bool = True) -> str:
    """What one server process reserves, in words: a ParameterServer or a shard (``holds_params``: with
    ``server_resources``), or a sequencer (CPUs only)."""
    return f"{own.server_cpus:g} CPU" + (resource_words(own.server_resources) if holds_params else "")


def cause_of(error: Exception) -> str:
    """An actor's error as one line (its last line: Ray wraps the remote traceback)."""
    lines = str(error).strip().splitlines()
    return " ".join(lines[-1].split()) if lines else type(error).__name__


RemoteParameterServer = ray.remote(ParameterServer)


def server_bundle(placement_group: Any, num_actors: int, num_shards: int = 0) -> int:
    """The server's bundle in a trial's placement group ``[trial process, server, actor 0, ..., actor P-1]``
    (``[trial process, sequencer, shard 0, ..., shard K-1, actor 0, ...]`` with K shards): 1, or 0 when the
    trial process asked for no resources (Tune then leaves its empty bundle out)."""
    return placement_group.bundle_count - num_actors - num_shards - 1 if placement_group is not None else 0


def in_bundle(placement_group: Any, index: int) -> dict[str, Any]:
    """Actor options that pin it to one bundle of the trial's placement group (none outside one): bundles of
    equal size would otherwise let the server take a worker's bundle and leave that worker waiting forever."""
    if placement_group is None:
        return {}
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return {"scheduling_strategy": PlacementGroupSchedulingStrategy(placement_group, index)}


def actor_count(cfg: TrialConfig, placement_group: Any = None) -> int:
    """P: ``num_actors`` (at most N: an actor beyond one per logical worker would idle); unset, N in a
    trial's placement group (which reserves one bundle per worker, ``dana_ray.executors``), else what the
    cluster can place now."""
    if ray_options(cfg).num_actors:
        return min(cfg.num_workers, ray_options(cfg).num_actors)
    return cfg.num_workers if placement_group is not None else default_num_actors(cfg)


def default_num_actors(cfg: TrialConfig) -> int:
    """min(N, the actors of this size that the cluster's free resources hold now), at least 1."""
    free = ray.available_resources()
    if cfg.compute.gpus_per_actor > 0:
        capacity = int(free.get("GPU", 0) // cfg.compute.gpus_per_actor)
    elif cfg.compute.cpus_per_actor > 0:
        capacity = int(max(free.get("CPU", 0) - ray_options(cfg).server_cpus, 0) // cfg.compute.cpus_per_actor)
    else:
        capacity = cfg.num_workers
    return max(1, min(cfg.num_workers, capacity))


class RayExecutor(Executor):
    """The driver's handle on one trial's ParameterServer; one remote call per epoch.

    ``RayExecutor.borrow`` and ``close(reusable=True)`` keep a finished trial's ParameterServer and Workers for
    the next trial of this process with the same resources (a Tune trial process that Tune reuses: the actors
    stay in its placement group), which resets them instead of starting new processes. The pooled actors keep
    the names of the first trial they served.
    """

    #: One idle executor per process: (its resources and placement group, the executor).
    _idle: tuple[tuple, "RayExecutor"] | None = None

    @classmethod
    def borrow(cls, cfg: TrialConfig, name: str | None = None, placement_group: Any = None,
               metrics: bool = False) -> "RayExecutor":
        """The idle executor of this process reset to ``cfg`` if its resources match, else a new one."""
        key, idle = cls._key(cfg, placement_group, metrics), cls._idle
        cls._idle = None
        if idle is not None:
            if idle[0] == key:
                try:
                    idle[1]._reset(cfg, name or idle[1].name)
                    return idle[1]
                except Exception:  # a broken pool is no reason to fail a trial: start afresh
                    pass
            idle[1].close()
        executor = cls(cfg, name, placement_group=placement_group, metrics=metrics)
        executor.key = key
        return executor

    @staticmethod
    def _key(cfg: TrialConfig, placement_group: Any, metrics: bool) -> tuple:
        own = ray_options(cfg)
        return (actor_count(cfg, placement_group), cfg.compute.cpus_per_actor, cfg.compute.gpus_per_actor,
                own.server_cpus, tuple(sorted(own.server_resources.items())), own.server_shards,
                None if placement_group is None else placement_group.id.hex(), metrics)

    def __init__(self, cfg: TrialConfig, name: str | None = None, worker_class: Any = None,
                 placement_group: Any = None, metrics: bool = False, shard_class: Any = None) -> None:
        """``metrics``: the server exports the trial's live figures (``dana_ray.metrics``). ``worker_class``,
        ``shard_class``: the remote classes of the gradient actors and server shards (tests and benchmarks
        pass their own)."""
        if not ray.is_initialized():
            ray.init()  # joins the cluster in RAY_ADDRESS (ray job submit) or on this machine, else starts one
        self.name = name or f"trial-{uuid.uuid4().hex[:8]}"
        self.key: tuple | None = None  # set when borrowed: the executor may go back to the pool
        self.num_actors = actor_count(cfg, placement_group)
        own = ray_options(cfg)
        shards = own.server_shards if own.server_shards > 1 else 0  # K, or none
        args = [cfg.to_dict(), self.name, self.num_actors, worker_class, placement_group, metrics]
        if shards:
            from dana_ray.engine.ray_shards import RemoteShardedParameterServer as server_class
            args.append(shard_class)
        else:
            server_class = RemoteParameterServer
        self.server = server_class.options(
            name=f"{self.name}/ParameterServer", num_cpus=own.server_cpus,
            resources={} if shards else dict(own.server_resources),  # a sequencer holds no θ
            **in_bundle(placement_group, server_bundle(placement_group, self.num_actors, shards)),
        ).remote(*args)
        try:
            self._await_server(cfg, holds_params=not shards)
            info = ray.get(self.server.start.remote())
        except Exception:
            ray.kill(self.server)
            raise
        self._started(info)

    def _await_server(self, cfg: TrialConfig, holds_params: bool) -> None:
        """Wait at most ``actor_start_timeout_s`` for the server process (a sequencer unless ``holds_params``)
        to run; then fail with one line."""
        timeout = ray_options(cfg).actor_start_timeout_s
        ready, _ = ray.wait([self.server.__ray_ready__.remote()], timeout=timeout)
        if not ready:
            raise RuntimeError(
                f"{self.name}/ParameterServer was not running {timeout:g} s after it was asked to start the trial: "
                f"no live node has room for it ({server_words(ray_options(cfg), holds_params)}). The trial stops "
                f"here; under Tune it resumes from its last checkpoint once the cluster has room (tune.max_failures)")

    def _started(self, info: dict[str, Any]) -> None:
        self.steps_per_epoch, self.num_classes = info["steps_per_epoch"], info["num_classes"]
        self.num_params = info["num_params"]

    def _reset(self, cfg: TrialConfig, name: str) -> None:
        self.name = name
        self._started(ray.get(self.server.reset.remote(cfg.to_dict(), name)))

    def run_epoch(self, steps: int) -> dict[str, Any]:
        return ray.get(self.server.run_epoch.remote(steps))

    def state_dict(self) -> dict:
        return ray.get(self.server.state_dict.remote())

    def load_state_dict(self, state: dict) -> None:
        ray.get(self.server.load_state_dict.remote(state))

    def params_sha256(self) -> str:
        return ray.get(self.server.params_sha256.remote())

    def close(self, reusable: bool = False) -> None:
        """Kill the server and its actors; or, when ``reusable`` and borrowed, keep them for the next trial."""
        if reusable and self.key is not None:
            if RayExecutor._idle is not None:
                RayExecutor._idle[1].close()
            RayExecutor._idle = (self.key, self)
            return
        try:
            ray.get(self.server.close.remote())
        finally:
            ray.kill(self.server)
