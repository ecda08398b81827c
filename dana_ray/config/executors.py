"""The executors by name: how a trial's gradients get computed, each declared once, as rules are.

An entry (``ExecutorSpec``) says what the rest of the system needs to know of an executor, so that no module
names one:

- ``make``: how to build it for one trial, ``make(cfg, name=, placement_group=, reuse=, metrics=)``; a
  callable, or for the built-in executors the ``"module:attribute"`` path of one, imported when a trial is
  built (``load_make``): the declaration lives here, below the engine, and names its implementation the way
  a plug-in is named, so a config never imports the engine (nor Ray);
- ``bundles(settings, workers, trial_cpus)``: the trial's reservation, a placement group's bundles, the trial
  process's first (``settings``: every section option by name, ``all_options``); Tune reserves them and
  ``cluster.resources.size_to_cluster`` sizes grids against them;
- ``sized``: the settings ``fit`` may choose when a grid leaves them unset;
- ``arrival``: whether it can apply gradients in the order they arrive (``schedule: arrival``);
- ``shards``: whether it can split θ over ``server_shards`` server processes; ``strategy``: how Ray places
  the trial's bundles (``SPREAD`` puts shards on distinct nodes where the cluster has them);
- ``describe(settings, workers, trial_cpus)``: the reservation in words, for one-line refusals;
- ``options``: the executor's own config section (``ray:``), declared and checked here as a rule's options
  are by the rule; ``check``: that section against the whole config.

A new executor is one module that calls ``register_executor`` (and is listed in a config's ``plugins``),
like a rule: its name is then accepted by ``dana_ray.run``, the trial CLI, a grid's ``tune.executor`` and the
sweep's ``--executor``.

The Ray executor's reservation is written once, as ``RayLayout``: the bundles it asks for and where each of
its processes finds its own bundle again.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dana_ray.config.sections import register_section
from dana_ray.core.checks import custom_resources, integer, is_integer, number, optional, resource_words
from dana_ray.core.registry import Option, Registry
from dana_ray.schedules import ARRIVAL

Bundle = dict[str, float]
#: The section options an executor's ``bundles`` read (its ``settings`` mapping holds these keys).
RESERVATIONS = ("num_actors", "cpus_per_actor", "gpus_per_actor", "server_cpus", "server_shards")
#: ``jobs_per_call: auto``: sized by the server from what it measures (``engine/dispatch.Dispatcher.size_calls``).
AUTO = "auto"
#: The most server shards a trial may have.
MAX_SHARDS = 256


@dataclass(frozen=True)
class ExecutorSpec:
    #: ``make(cfg, name=, placement_group=, reuse=, metrics=) -> Executor``, or its ``"module:attribute"`` path
    make: Callable[..., Any] | str
    bundles: Callable[[Mapping[str, Any], int, float], list[Bundle]]
    sized: tuple[str, ...]
    arrival: bool
    describe: Callable[[Mapping[str, Any], int, float], str]
    in_trial_process: bool = False  # computes in the trial's own process (its torch threads: an actor's)
    shards: bool = False  # can split θ over server_shards > 1 server processes
    #: the placement group strategy of the trial's bundles (``settings`` -> a Ray strategy name)
    strategy: Callable[[Mapping[str, Any]], str] = lambda settings: "PACK"
    help: str = ""
    #: the executor's own config section (its options, checked by them), or none
    options: Mapping[str, Option] = field(default_factory=dict)
    #: a check of that section against the whole config (``check(cfg)``), or None
    check: Callable[[Any], None] | None = None

    def load_make(self) -> Callable[..., Any]:
        """``make``, imported where it is given as a ``"module:attribute"`` path."""
        if callable(self.make):
            return self.make
        module, _, attribute = self.make.partition(":")
        target: Any = importlib.import_module(module)
        for part in attribute.split("."):
            target = getattr(target, part)
        return target


#: Every executor by the name configs, grids and command lines use.
EXECUTORS: Registry[ExecutorSpec] = Registry("executor")


def register_executor(name: str, spec: ExecutorSpec) -> ExecutorSpec:
    """Register an executor; its options (if any) become the config section of its name."""
    if spec.options:
        register_section(name, dict(spec.options), spec.check, help=spec.help)
    return EXECUTORS.register(name, spec)


def need(bundles: list[Bundle]) -> tuple[float, float, float]:
    """(CPUs, GPUs, the largest bundle's CPUs) of a reservation."""
    return (
        sum(b.get("CPU", 0.0) for b in bundles),
        sum(b.get("GPU", 0.0) for b in bundles),
        max((b.get("CPU", 0.0) for b in bundles), default=0.0),
    )


def check_supports(
    executor: str,
    schedules: list[str],
    server_shards: int = 1,
    field: str = "schedule",
    shards_field: str = "ray.server_shards",
) -> None:
    """Refuse ``arrival`` among ``schedules`` for an executor that follows a seeded order only, and
    ``server_shards`` > 1 for one that holds θ in one process (the errors named ``field``, ``shards_field``)."""
    spec = EXECUTORS[executor]
    if ARRIVAL in schedules and not spec.arrival:
        able = [name for name in EXECUTORS if EXECUTORS[name].arrival]
        raise ValueError(
            f"{field}: {ARRIVAL!r} is the real order gradients reach a server; executor {executor!r} "
            f"follows a seeded schedule (executors that take {ARRIVAL!r}: {', '.join(able)})"
        )
    if server_shards != 1 and not spec.shards:
        able = [name for name in EXECUTORS if EXECUTORS[name].shards]
        raise ValueError(
            f"{shards_field}: executor {executor!r} holds θ in one process; server_shards {server_shards} "
            f"needs an executor with server shards ({', '.join(able)})"
        )


def gradient_actor(settings: Mapping[str, Any]) -> Bundle:
    """One model replica's reservation (a gradient actor's; the local executor's trial process)."""
    gpus = settings["gpus_per_actor"]
    return {"CPU": settings["cpus_per_actor"], "GPU": gpus} if gpus else {"CPU": settings["cpus_per_actor"]}


def actor_words(settings: Mapping[str, Any]) -> str:
    gpus = settings["gpus_per_actor"]
    return f"{settings['cpus_per_actor']:g} CPU" + (f" + {gpus:g} GPU" if gpus else "")


def num_actors(settings: Mapping[str, Any], workers: int) -> int:
    """P: min(N, the ``num_actors`` cap); N when it is unset."""
    return workers if settings["num_actors"] is None else min(workers, settings["num_actors"])


# -- local: the whole simulation in one process ----------------------------------------------------------------

register_executor(
    "local",
    ExecutorSpec(
        make="dana_ray.engine.local:LocalExecutor.launch",
        bundles=lambda settings, workers, trial_cpus: [gradient_actor(settings)],
        sized=("cpus_per_actor",),
        arrival=False,
        describe=lambda settings, workers, trial_cpus: f"one actor's share: {actor_words(settings)}",
        in_trial_process=True,
        help="the master and one model replica in one process (a Tune trial: one gradient actor's resources)",
    ),
)


# -- ray: a ParameterServer actor and its Worker actors --------------------------------------------------------


@dataclass(frozen=True)
class RayLayout:
    """One Ray-executor trial's placement group, written once: ``[trial process, server, actor 0, ...,
    actor P-1]``, or with K > 1 server shards ``[trial process, sequencer, shard 0, ..., shard K-1, actor 0,
    ...]``. Tune leaves the trial process's bundle out when it asks for nothing, so each index is counted
    from the end (``bundle_count``): the bundles after it are the same whatever Tune did."""

    num_actors: int
    #: K server shards, or 0: the trial's θ in its one ParameterServer
    num_shards: int = 0

    def bundles(self, settings: Mapping[str, Any], trial_cpus: float) -> list[Bundle]:
        """The reservation: each server process takes ``server_cpus``; each that holds θ (the server, or each
        shard; not the sequencer) also the custom ``server_resources``."""
        holder = {"CPU": settings["server_cpus"], **settings["server_resources"]}
        servers = (
            [{"CPU": settings["server_cpus"]}] + [dict(holder) for _ in range(self.num_shards)]
            if self.num_shards
            else [holder]
        )
        return [{"CPU": trial_cpus}] + servers + [gradient_actor(settings) for _ in range(self.num_actors)]

    def server(self, bundle_count: int) -> int:
        """The ParameterServer's (or sequencer's) bundle."""
        return bundle_count - self.num_actors - self.num_shards - 1

    def shard(self, bundle_count: int, k: int) -> int:
        return self.server(bundle_count) + 1 + k

    def actor(self, bundle_count: int, slot: int) -> int:
        return self.server(bundle_count) + 1 + self.num_shards + slot


def ray_layout(settings: Mapping[str, Any], workers: int) -> RayLayout:
    shards = settings["server_shards"]
    return RayLayout(num_actors(settings, workers), shards if shards > 1 else 0)


def _ray_words(settings: Mapping[str, Any], workers: int, trial_cpus: float) -> str:
    shards = settings["server_shards"]
    servers = (
        f"server_cpus {settings['server_cpus']:g}"
        if shards == 1
        else f"(1 + {shards} shards) x server_cpus {settings['server_cpus']:g}"
    )
    pinned = resource_words(settings["server_resources"])
    servers += f" ({'each shard' if shards > 1 else 'the server'}{pinned})" if pinned else ""
    return f"trial_cpus {trial_cpus:g} + {servers} + {num_actors(settings, workers)} actors x {actor_words(settings)}"


def _jobs_per_call(field: str, value: object) -> None:
    if value != AUTO and not (is_integer(value) and value >= 1):
        raise ValueError(f"{field}: expected {AUTO!r} or an integer >= 1, got {value!r}")


#: The Ray executor's section, ``ray:``.
RAY_OPTIONS = {
    "num_actors": Option(None, optional(integer(1)), "P gradient actors (None: min(N, what the cluster can place))"),
    "server_cpus": Option(
        1.0,
        number(0.0),
        "CPUs reserved for the ParameterServer actor (and each shard); its "
        "update runs on round(server_cpus) torch threads (at least 1)",
    ),
    "server_resources": Option(
        {},
        custom_resources(),
        "custom resources each process that holds θ (the "
        "ParameterServer, or each shard; not the sequencer) also reserves, e.g. {server: 1} "
        "to place them on the nodes that declare that resource (cluster.yaml's server nodes)",
    ),
    "server_shards": Option(
        1,
        integer(1, MAX_SHARDS),
        "K: θ and the rule's state split over K server shard "
        "actors, a sequencer ordering the updates (engine/shards.py); the same numbers for any K",
    ),
    "jobs_per_call": Option(
        AUTO,
        _jobs_per_call,
        "up to this many ready jobs go to an actor in one call, computed "
        "one by one (or vmap_jobs at a time); the same numbers. auto: sized from measured times",
    ),
    "max_actor_restarts": Option(3, integer(0), "dead gradient actors replaced per trial before it fails"),
    "actor_start_timeout_s": Option(
        600.0,
        number(0.0, above=True),
        "a gradient actor (first or replacement) not "
        "running by then fails the trial with one message, rather than waiting for room",
    ),
}


def _check_ray(cfg: Any) -> None:
    shards = cfg.section("ray").server_shards
    if shards > 1 and not cfg.rule.per_coordinate:
        raise ValueError(
            f"ray.server_shards: algorithm {cfg.algorithm!r} reads across coordinates "
            f"(per_coordinate = False), so it cannot be split; use server_shards: 1"
        )


register_executor(
    "ray",
    ExecutorSpec(
        make="dana_ray.engine.ray.executor:RayExecutor.launch",
        bundles=lambda settings, workers, trial_cpus: ray_layout(settings, workers).bundles(settings, trial_cpus),
        sized=("num_actors", "server_cpus", "cpus_per_actor"),
        arrival=True,
        describe=_ray_words,
        shards=True,
        strategy=lambda settings: "SPREAD" if settings["server_shards"] > 1 else "PACK",
        help="a ParameterServer actor (or a sequencer and server_shards shards) and num_actors Worker actors per "
        "trial, across the cluster",
        options=RAY_OPTIONS,
        check=_check_ray,
    ),
)
