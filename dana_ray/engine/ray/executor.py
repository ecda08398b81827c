"""The Ray executor, from the driver's side: ``RayExecutor`` starts one trial's ``ParameterServer`` (or, with
``server_shards`` > 1, its sequencer and shards; ``shards.py``) and drives it with one remote call per epoch;
nothing per step passes through the driver.

A process that runs many trials with the same resources (a Tune trial process that Tune reuses) keeps its
finished trial's server and actors in a ``ServerPool`` and resets them for the next trial instead of
starting new processes. A pooled server that cannot be reset is reported (a logged note naming the cause)
and replaced by a new one.

With a seeded schedule the numbers equal the local executor's for any P, given the same ``cpu_threads``
(CPU kernels may sum in a different order with another thread count).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import ray

from dana_ray.config import TrialConfig, ray_layout
from dana_ray.core.cli import one_line
from dana_ray.engine.loop import Executor
from dana_ray.engine.ray.fleet import place, server_words
from dana_ray.engine.ray.server import RemoteParameterServer
from dana_ray.engine.telemetry import Sink

log = logging.getLogger(__name__)


def actor_count(cfg: TrialConfig, placement_group: Any = None) -> int:
    """P: ``num_actors`` (at most N: an actor beyond one per logical worker would idle); unset, N in a
    trial's placement group (which reserves one bundle per worker, ``config.RayLayout``), else what the
    cluster can place now."""
    cap = cfg.section("ray").num_actors
    if cap:
        return min(cfg.num_workers, cap)
    return cfg.num_workers if placement_group is not None else default_num_actors(cfg)


def default_num_actors(cfg: TrialConfig) -> int:
    """min(N, the actors of this size that the cluster's free resources hold now), at least 1."""
    free = ray.available_resources()
    if cfg.compute.gpus_per_actor > 0:
        capacity = int(free.get("GPU", 0) // cfg.compute.gpus_per_actor)
    elif cfg.compute.cpus_per_actor > 0:
        capacity = int(max(free.get("CPU", 0) - cfg.section("ray").server_cpus, 0) // cfg.compute.cpus_per_actor)
    else:
        capacity = cfg.num_workers
    return max(1, min(cfg.num_workers, capacity))


class ServerPool:
    """One idle executor per process, kept with the resources it holds (its key): the next trial whose key
    matches borrows it, reset to its config; any other closes it."""

    def __init__(self) -> None:
        self.idle: tuple[tuple, RayExecutor] | None = None

    def take(self, key: tuple) -> RayExecutor | None:
        """The idle executor if its key is ``key`` (else it is closed), emptying the pool."""
        idle, self.idle = self.idle, None
        if idle is None:
            return None
        if idle[0] == key:
            return idle[1]
        idle[1].close()
        return None

    def keep(self, key: tuple, executor: RayExecutor) -> None:
        """Hold ``executor`` for the next trial (closing the one held before)."""
        if self.idle is not None:
            self.idle[1].close()
        self.idle = (key, executor)


#: This process's pool (a Tune trial process serves its trials one after another).
POOL = ServerPool()


class RayExecutor(Executor):
    """The driver's handle on one trial's ParameterServer; one remote call per epoch."""

    @classmethod
    def launch(
        cls,
        cfg: TrialConfig,
        name: str | None = None,
        placement_group: Any = None,
        reuse: bool = False,
        metrics: Callable[[], Sink] | None = None,
    ) -> RayExecutor:
        """The registry's ``make`` (``config/executors.py``). ``reuse``: borrow this process's pooled server
        where its resources match (``close(reusable=True)`` returns it to the pool)."""
        if not reuse:
            return cls(cfg, name, placement_group=placement_group, metrics=metrics)
        key = cls._key(cfg, placement_group, metrics is not None)
        pooled = POOL.take(key)
        if pooled is not None:
            try:
                pooled._reset(cfg, name or pooled.name, metrics)
                return pooled
            except Exception as error:
                log.warning(
                    "%s: the pooled server of the previous trial could not be reused (%s); starting a new one",
                    name or pooled.name,
                    one_line(error),
                )
                pooled.close()
        executor = cls(cfg, name, placement_group=placement_group, metrics=metrics)
        executor.key = key
        return executor

    @staticmethod
    def _key(cfg: TrialConfig, placement_group: Any, metrics: bool) -> tuple:
        own = cfg.section("ray")
        return (
            actor_count(cfg, placement_group),
            cfg.compute.cpus_per_actor,
            cfg.compute.gpus_per_actor,
            own.server_cpus,
            tuple(sorted(own.server_resources.items())),
            own.server_shards,
            None if placement_group is None else placement_group.id.hex(),
            metrics,
        )

    def __init__(
        self,
        cfg: TrialConfig,
        name: str | None = None,
        worker_class: Any = None,
        placement_group: Any = None,
        metrics: Callable[[], Sink] | None = None,
        shard_class: Any = None,
    ) -> None:
        """``metrics``: makes the sink of the trial's live figures in the server (``RayMetrics``), or None.
        ``worker_class``, ``shard_class``: the remote classes of the gradient actors and server shards (tests
        and benchmarks pass their own)."""
        if not ray.is_initialized():
            ray.init()  # joins the cluster in RAY_ADDRESS (ray job submit) or on this machine, else starts one
        self.name = name or f"trial-{uuid.uuid4().hex[:8]}"
        self.key: tuple | None = None  # set when launched with reuse: the executor may go back to the pool
        self.num_actors = actor_count(cfg, placement_group)
        own = cfg.section("ray")
        layout = ray_layout(dict(cfg.settings(), num_actors=self.num_actors), cfg.num_workers)
        args = [cfg.to_dict(), self.name, self.num_actors, worker_class, placement_group, metrics]
        server_class: Any = RemoteParameterServer
        if layout.num_shards:
            from dana_ray.engine.ray.shards import RemoteShardedParameterServer

            server_class = RemoteShardedParameterServer
            args.append(shard_class)
        where = (
            place(placement_group, layout.server(placement_group.bundle_count)) if placement_group is not None else {}
        )
        self.server = server_class.options(
            name=f"{self.name}/ParameterServer",
            num_cpus=own.server_cpus,
            resources={} if layout.num_shards else dict(own.server_resources),  # a sequencer holds no θ
            **where,
        ).remote(*args)
        try:
            self._await_server(cfg, holds_params=not layout.num_shards)
            info = ray.get(self.server.start.remote())
        except Exception:
            ray.kill(self.server)
            raise
        self._started(info)

    def _await_server(self, cfg: TrialConfig, holds_params: bool) -> None:
        """Wait at most ``actor_start_timeout_s`` for the server process (a sequencer unless ``holds_params``)
        to run; then fail with one line."""
        timeout = cfg.section("ray").actor_start_timeout_s
        ready, _ = ray.wait([self.server.__ray_ready__.remote()], timeout=timeout)
        if not ready:
            raise RuntimeError(
                f"{self.name}/ParameterServer was not running {timeout:g} s after it was asked to start the trial: "
                f"no live node has room for it ({server_words(cfg.section('ray'), holds_params)}). The trial stops "
                f"here; under Tune it resumes from its last checkpoint once the cluster has room (tune.max_failures)"
            )

    def _started(self, info: dict[str, Any]) -> None:
        self.steps_per_epoch, self.num_classes = info["steps_per_epoch"], info["num_classes"]
        self.num_params = info["num_params"]

    def _reset(self, cfg: TrialConfig, name: str, metrics: Callable[[], Sink] | None) -> None:
        self.name = name
        self._started(ray.get(self.server.reset.remote(cfg.to_dict(), name, metrics)))

    def run_epoch(self, steps: int) -> dict[str, Any]:
        return ray.get(self.server.run_epoch.remote(steps))

    def state_dict(self) -> dict:
        return ray.get(self.server.state_dict.remote())

    def load_state_dict(self, state: dict) -> None:
        ray.get(self.server.load_state_dict.remote(state))

    def params_sha256(self) -> str:
        return ray.get(self.server.params_sha256.remote())

    def close(self, reusable: bool = False) -> None:
        """Kill the server and its actors; or, when ``reusable`` and launched with reuse, keep them in the
        pool for the next trial."""
        if reusable and self.key is not None:
            POOL.keep(self.key, self)
            return
        try:
            ray.get(self.server.close.remote())
        finally:
            ray.kill(self.server)
