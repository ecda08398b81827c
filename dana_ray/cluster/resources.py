"""Trials sized to the cluster they run on, decided once before Tune starts.

A trial reserves, on the Ray executor, ``trial_cpus`` for its own process, ``server_cpus`` for its
ParameterServer and ``cpus_per_actor`` (and ``gpus_per_actor``) for each of its P = min(N, num_actors)
Worker actors; on the local executor, one actor's share. Tune waits, without end, for a trial that asks for
more than the cluster holds. So, on a cluster that cannot grow (the sweep started Ray itself), ``size_to_cluster``:

- settings the grid leaves unset are sized to fit: ``num_actors`` first (the largest cap at which every
  trial fits, at least 1), then ``server_cpus`` and ``cpus_per_actor`` shrunk together (an actor's torch
  threads stay ``max(1, round(cpus_per_actor))``: one, as at the default of 1 CPU, so no number changes);
- if a trial still does not fit (settings the grid sets, GPUs the cluster lacks), ``size_to_cluster`` raises a
  ``ValueError`` naming the settings, what a trial needs and what the cluster has.

On a cluster the sweep joined (``ray up``, ``ray job submit``), an autoscaler may add nodes: nothing is
changed, and ``waiting_line`` says once what a trial needs that the cluster does not have yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from dana_ray.config import EXECUTORS, RESERVATIONS, all_options, given_options, need, section_of
from dana_ray.core.checks import BUILTIN_RESOURCES


def _settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Every section option by name: ``settings``'s (options by name), the defaults where it leaves them
    unset (or None)."""
    return {k: settings[k] if settings.get(k) is not None else v for k, v in all_options({}).items()}


@dataclass(frozen=True)
class Cluster:
    cpus: float  # in all
    gpus: float
    node_cpus: float  # on the largest node: one bundle must fit on one node
    node_gpus: float
    custom: dict[str, float] = field(default_factory=dict)  # custom resources (``server: 4``), in all

    def describe(self) -> str:
        custom = "".join(f", {_n(amount)} {name}" for name, amount in sorted(self.custom.items()))
        return f"{_n(self.cpus)} CPUs{custom} and {_n(self.gpus)} GPUs"


def _n(value: float) -> str:
    return f"{value:g}"


def trial_need(settings: dict[str, Any], workers: int, executor: str, trial_cpus: float) -> tuple[float, float, float]:
    """(CPUs, GPUs, the largest single bundle's CPUs) one trial of ``workers`` reserves with ``settings``
    (section options by name; the executor's bundles, ``config/executors.py``)."""
    return need(EXECUTORS[executor].bundles(_settings(settings), workers, trial_cpus))


def custom_need(settings: dict[str, Any], workers: int, executor: str, trial_cpus: float) -> dict[str, float]:
    """The custom resources (``server_resources``) one trial of ``workers`` reserves, by name, in all."""
    total: dict[str, float] = {}
    for bundle in EXECUTORS[executor].bundles(_settings(settings), workers, trial_cpus):
        for name, amount in bundle.items():
            if name not in ("CPU", "GPU"):
                total[name] = total.get(name, 0.0) + amount
    return total


def _lacking(
    settings: dict[str, Any], workers: int, executor: str, trial_cpus: float, cluster: Cluster
) -> dict[str, float]:
    """The custom resources a trial reserves beyond what ``cluster`` has, by name (the whole reservation)."""
    return {
        name: amount
        for name, amount in custom_need(settings, workers, executor, trial_cpus).items()
        if amount > cluster.custom.get(name, 0.0) + 1e-9
    }


def _fits(settings: dict, workers: int, executor: str, trial_cpus: float, cluster: Cluster) -> bool:
    cpus, gpus, bundle = trial_need(settings, workers, executor, trial_cpus)
    eps = 1e-9
    return (
        cpus <= cluster.cpus + eps
        and gpus <= cluster.gpus + eps
        and bundle <= cluster.node_cpus + eps
        and _settings(settings)["gpus_per_actor"] <= cluster.node_gpus + eps
        and not _lacking(settings, workers, executor, trial_cpus, cluster)
    )


def size_to_cluster(
    trial: dict[str, Any], worker_counts: list[int], executor: str, trial_cpus: float, cluster: Cluster
) -> dict[str, Any]:
    """The settings of the executor's ``sized`` (``config/executors.py``; they change no number) to add to the
    grid's ``trial`` section so that a trial of every N in ``worker_counts`` fits ``cluster`` ({} when it fits
    as it is); raises ValueError when it cannot."""
    trial = {k: v for k, v in given_options(trial).items() if v is not None}  # by name; None: left unset
    settings = _settings(trial)
    largest = max(worker_counts)
    chosen: dict[str, Any] = {}
    if _fits(settings, largest, executor, trial_cpus, cluster):
        return chosen
    sized = EXECUTORS[executor].sized
    if "num_actors" in sized and "num_actors" not in trial:
        cap = largest
        while cap > 1 and not _fits(dict(settings, num_actors=cap), largest, executor, trial_cpus, cluster):
            cap -= 1
        chosen["num_actors"] = settings["num_actors"] = cap
    free = [k for k in sized if k != "num_actors" and k not in trial]
    if free and not _fits(settings, largest, executor, trial_cpus, cluster):
        # a trial's CPUs are linear in the free settings, all given one value v: fixed + shares * v
        fixed = trial_need(dict(settings, **dict.fromkeys(free, 0.0)), largest, executor, trial_cpus)[0]
        shares = trial_need(dict(settings, **dict.fromkeys(free, 1.0)), largest, executor, trial_cpus)[0] - fixed
        room = min((cluster.cpus - fixed) / shares, cluster.node_cpus)
        value = math.floor(room * 1000) / 1000  # a reservation Ray holds exactly (it counts in 1/10000)
        if value > 0:
            for k in free:
                chosen[k] = settings[k] = min(settings[k], value)
    lacking = _lacking(settings, largest, executor, trial_cpus, cluster)
    if lacking:
        name = sorted(lacking)[0]
        raise ValueError(
            f"resources: a trial of N={largest} reserves {_n(lacking[name])} {name} (ray.server_resources), and this "
            f"cluster has {_n(cluster.custom.get(name, 0.0))} {name} and cannot grow; declare it on a node type "
            f"(cluster.yaml: resources: {{{name}: ...}}) or leave ray.server_resources unset"
        )
    if not _fits(settings, largest, executor, trial_cpus, cluster):
        cpus, gpus, _ = trial_need(settings, largest, executor, trial_cpus)
        raise ValueError(
            f"resources: a trial of N={largest} needs {_n(cpus)} CPUs and {_n(gpus)} GPUs "
            f"({EXECUTORS[executor].describe(settings, largest, trial_cpus)}), and this cluster has "
            f"{cluster.describe()} "
            f"(at most {_n(cluster.node_cpus)} CPUs and {_n(cluster.node_gpus)} GPUs on one node) and cannot grow; "
            f"lower {', '.join(f'{section_of(k)}.{k}' for k in RESERVATIONS if k in trial) or 'the settings'}"
            f" in the grid's trial: section, or leave them unset to have them sized"
        )
    return chosen


def sized_line(chosen: dict[str, Any], cluster: Cluster, where: str = "in the grid's trial: section") -> str:
    """The one line a sweep (or the trial CLI) prints when ``size_to_cluster`` chose settings; ``where`` they
    are set."""
    settings = ", ".join(f"{k} {_n(v)}" for k, v in chosen.items())
    return (
        f"resources: sized to this cluster ({cluster.describe()}, which cannot grow): {settings} "
        f"(set them {where} to choose)"
    )


def waiting_line(
    trial: dict[str, Any], worker_counts: list[int], executor: str, trial_cpus: float, cluster: Cluster
) -> str | None:
    """On a cluster that may grow: one line saying what a trial needs beyond what the cluster has now."""
    trial = given_options(trial)
    largest = max(worker_counts)
    if _fits(trial, largest, executor, trial_cpus, cluster):
        return None
    cpus, gpus, _ = trial_need(trial, largest, executor, trial_cpus)
    custom = "".join(
        f", {_n(amount)} {name}" for name, amount in custom_need(trial, largest, executor, trial_cpus).items()
    )
    return (
        f"resources: a trial of N={largest} needs {_n(cpus)} CPUs{custom} and {_n(gpus)} GPUs; the cluster has "
        f"{cluster.describe()} now: waiting for its autoscaler to add nodes (Ctrl+C stops; see `ray status`)"
    )


def _is_custom(name: str) -> bool:
    """A resource a node type declares (``server``), not Ray's own (CPU, memory, ``node:<ip>``, ...)."""
    return name not in BUILTIN_RESOURCES and not name.startswith(("node:", "accelerator_type:"))


def read_cluster() -> tuple[Cluster, bool]:
    """This Ray cluster's resources, and whether it can grow (False when this process started it)."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total = ray.cluster_resources()
    cluster = Cluster(
        cpus=float(total.get("CPU", 0)),
        gpus=float(total.get("GPU", 0)),
        node_cpus=max((float(n["Resources"].get("CPU", 0)) for n in nodes), default=0.0),
        node_gpus=max((float(n["Resources"].get("GPU", 0)) for n in nodes), default=0.0),
        custom={name: float(amount) for name, amount in total.items() if _is_custom(name)},
    )
    try:
        node = ray._private.worker._global_node  # set in the process that started Ray (a head node here)
        started_here = node is not None and node.is_head()
    except AttributeError:  # pragma: no cover - Ray's internals moved: assume a cluster that may grow
        started_here = False
    return cluster, not started_here
