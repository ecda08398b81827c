"""A trial's actors, by slot: started in their bundles, waited for at most ``actor_start_timeout_s``, reset for
the next trial of a pool, and replaced when one dies.

``ActorFleet`` holds the P gradient actors (``Worker``) of one trial; a sharded server's shard actors are
placed and waited for the same way (``place``, ``await_running``). Every actor reports its node once it runs
(``ready``): a replacement is placed away from the nodes where actors died (outside a placement group; a
node going down is not declared dead at once), and the transport pulls results ahead from actors on other
nodes than the server's.

How many replacements a trial may make, and whether a death is survivable at all (a rule whose worker-side
state lives on its actors), is ``Restarts``'s to say, shared by the gradient actors and the shards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import ray

from dana_ray.config import RayLayout, TrialConfig
from dana_ray.core.checks import resource_words
from dana_ray.core.cli import one_line

#: The label every Ray node carries with its id (Ray's ``ray.util.placement_group.NODE_ID_LABEL_KEY``).
NODE_ID_LABEL = "ray.io/node-id"


def place(placement_group: Any, index: int) -> dict[str, Any]:
    """Actor options that pin it to bundle ``index`` of the trial's placement group (none outside one): bundles
    of equal size would otherwise let the server take a worker's bundle and leave that worker waiting forever."""
    if placement_group is None:
        return {}
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return {"scheduling_strategy": PlacementGroupSchedulingStrategy(placement_group, index)}


def server_words(own: Any, holds_params: bool = True) -> str:
    """What one server process reserves, in words (``own``: the config's ``ray`` section): a ParameterServer
    or a shard (``holds_params``: with ``server_resources``), or a sequencer (CPUs only)."""
    return f"{own.server_cpus:g} CPU" + (resource_words(own.server_resources) if holds_params else "")


def await_running(
    actors: list,
    nodes: list,
    name_of: Callable[[int], str],
    slots: Iterable[int],
    wants: str,
    why: str,
    timeout_s: float,
    placement_group: Any = None,
) -> None:
    """Wait until ``actors[k]`` for k in ``slots`` run (each reports its node into ``nodes[k]``), at most
    ``timeout_s``; then kill those still waiting and fail with one message naming ``name_of(k)`` and what it
    ``wants`` (a cluster with no room would otherwise keep the trial waiting forever, silently). The message
    tells no room from a slow start where it can: an actor whose ``placement_group`` is in place has room,
    so it is still in its constructor (loading its data set from a network file system, say)."""
    refs = {actors[k].ready.remote(): k for k in slots}
    ready, missing = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    for ref in ready:
        k = refs[ref]
        try:
            nodes[k] = ray.get(ref)["node_id"]
        except ray.exceptions.RayActorError as error:
            raise RuntimeError(f"{name_of(k)} could not start: {one_line(error)}") from None
    if missing:
        k = refs[missing[0]]
        for ref in missing:
            ray.kill(actors[refs[ref]])
        if placement_group is not None and placement_group.wait(timeout_seconds=1):  # asks the GCS
            raise RuntimeError(
                f"{name_of(k)} was not running {timeout_s:g} s after it was asked {why}, though its reservation "
                f"({wants}) was in place: it was still starting (loading its data set, building its model); "
                f"raise ray.actor_start_timeout_s if its start takes that long"
            )
        raise RuntimeError(
            f"{name_of(k)} was not running {timeout_s:g} s after it was asked {why}: no live node has room for it "
            f"({wants}), or it was still starting (loading its data set, building its model). The trial stops "
            f"here; under Tune it resumes from its last checkpoint once the cluster has room (tune.max_failures)"
        )


class Restarts:
    """The replacements of dead actors one trial may make: at most ``max_actor_restarts``, and none when the
    rule keeps worker-side state on its actors (``keeps_state``: that state cannot be rebuilt, so the trial
    fails and resumes from its last checkpoint)."""

    def __init__(self, most: int, keeps_state: bool, rule: str) -> None:
        self.most, self.keeps_state, self.rule = most, keeps_state, rule
        self.count = 0

    def spend(self, who: str, cause: str, what_is_lost: str) -> None:
        """Count one replacement of the dead actor ``who``, or fail the trial in one line saying why not."""
        if self.keeps_state:
            raise RuntimeError(f"{who} died{what_is_lost}; resume the trial from its last checkpoint: {cause}")
        if self.count >= self.most:
            raise RuntimeError(f"{who} died and max_actor_restarts={self.most} replacements are used up: {cause}")
        self.count += 1

    def suffix(self) -> str:
        """``.r`` after the r-th replacement: the names of actors started since (the dashboard's)."""
        return f".{self.count}" if self.count else ""


class ActorFleet:
    """The P gradient actors of one trial, by slot (slot k is bundle ``layout.actor(k)`` of the trial's
    placement group, or anywhere outside one)."""

    def __init__(
        self,
        cfg: TrialConfig,
        name: str,
        worker_class: Any,
        placement_group: Any,
        layout: RayLayout,
        restarts: Restarts,
    ) -> None:
        self.cfg, self.name, self.worker_class = cfg, name, worker_class
        self.placement_group, self.layout, self.restarts = placement_group, layout, restarts
        self.num_slots = layout.num_actors
        self.actors: list[Any] = []
        self.nodes: list[str | None] = [None] * self.num_slots  # the node each slot's actor runs on
        self.lost_nodes: set[str] = set()  # nodes where an actor died: replacements prefer other nodes

    def start(self) -> None:
        self.actors = [self._spawn(k) for k in range(self.num_slots)]
        self._await(range(self.num_slots), "to start the trial")

    def reset(self, cfg: TrialConfig, name: str, restarts: Restarts) -> None:
        """Serve a new trial with the same actors: each is reset to ``cfg`` (its data kept if the same)."""
        self.cfg, self.name, self.restarts = cfg, name, restarts
        ray.get([actor.reset.remote(cfg.to_dict(), k) for k, actor in enumerate(self.actors)])

    def name_of(self, slot: int) -> str:
        """``<trial>/Worker-k``, and ``.r`` after the r-th replacement of the trial (the dashboard's name)."""
        return f"{self.name}/Worker-{slot}" + self.restarts.suffix()

    def replace(self, slot: int, cause: str) -> None:
        """A new actor in ``slot`` (not on the node its predecessor died on, where another has room), once the
        trial's ``Restarts`` allow it."""
        self.restarts.spend(
            f"{self.name}/Worker-{slot}",
            cause,
            f" holding the worker-side state of rule {self.restarts.rule!r} (its logical workers' "
            f"momenta), which cannot be rebuilt",
        )
        ray.kill(self.actors[slot])
        lost = self.nodes[slot]
        if lost is not None:
            self.lost_nodes.add(lost)
        self.actors[slot] = self._spawn(slot)
        self._await([slot], f"to replace its predecessor, which died ({cause})")

    def kill(self) -> None:
        for actor in self.actors:
            ray.kill(actor)

    def _spawn(self, slot: int) -> Any:
        if self.placement_group is not None:  # its bundle decides (Ray re-places a lost node's bundles)
            where = place(self.placement_group, self.layout.actor(self.placement_group.bundle_count, slot))
        elif self.lost_nodes:  # not where an actor died (its node may be dead, though not yet declared so)
            where = {
                "label_selector": {NODE_ID_LABEL: f"!in({','.join(sorted(self.lost_nodes))})"},
                "fallback_strategy": [{"label_selector": {}}],
            }
        else:
            where = {}
        compute = self.cfg.compute
        return self.worker_class.options(
            name=self.name_of(slot), num_cpus=compute.cpus_per_actor, num_gpus=compute.gpus_per_actor, **where
        ).remote(self.cfg.to_dict(), slot)

    def _await(self, slots: Iterable[int], why: str) -> None:
        compute = self.cfg.compute
        wants = f"{compute.cpus_per_actor:g} CPU" + (
            f", {compute.gpus_per_actor:g} GPU" if compute.gpus_per_actor else ""
        )
        await_running(
            self.actors,
            self.nodes,
            self.name_of,
            slots,
            wants,
            why,
            self.cfg.section("ray").actor_start_timeout_s,
            self.placement_group,
        )
