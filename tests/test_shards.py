"""The sharded server without Ray: every rule split over K shards gives one server's numbers; bounds; the
checkpoint is one server's, whatever K; the law that catches a rule that is not per coordinate."""

from __future__ import annotations

import math

import pytest
import torch

from dana_ray.algorithms import ALGORITHMS, make_algorithm, register_rule
from dana_ray.algorithms.base import UpdateRule
from dana_ray.engine.loop import params_sha256
from dana_ray.engine.master import GradientResult, Master
from dana_ray.engine.shards import (
    ALIGN,
    LocalShards,
    Sharded,
    ShardedMaster,
    join_rule_states,
    shard_bounds,
    split_rule_state,
)
from dana_ray.schedules import make_schedule
from dana_ray.testing import shard_law, workers_for

D = 101  # not a multiple of ALIGN: the last shard is shorter


def build(name: str, shards: int, schedule: str = "block-random"):
    """A master over D parameters (``shards`` = 0: one rule, the plain ``Master``) and its rule factory."""
    n = workers_for(name, 4)
    lr = lambda step: 0.05 * 0.5 ** (step // 40)

    def rule(params):
        return make_algorithm(name, params, n, lr, 0.9, weight_decay=1e-3)

    x0 = torch.linspace(-1, 1, D)
    order = make_schedule(schedule, n, seed=3)
    bn = torch.zeros(3)
    if shards == 0:
        return Master(rule(x0), order, bn, 0.1), None
    local = LocalShards(rule, x0, shards)
    return ShardedMaster(rule(torch.zeros(0)), order, bn, 0.1, local), local


def drive(master, shards, steps: int, start: int = 0) -> None:
    """Apply ``steps`` gradients of a point-dependent, per-coordinate loss, as executors do (a worker side,
    where the rule has one, turns the gradient into the update before it is split)."""
    curvature = torch.linspace(0.5, 1.5, D)
    side = type(master.rule).make_worker_side(master.rule.momentum, master.rule.option_values)
    for t in range(start, start + steps):
        job = master.next_job()
        point = torch.cat(job.point.parts) if shards is not None else job.point
        grad = curvature * point + torch.sin(torch.arange(D) * (t + 1.0)) * 0.1
        if side is not None:
            grad = side.run(job.worker, job.batch, point, job.lr, lambda x, h, g=grad: g)
        if shards is not None:
            bounds = shards.bounds
            grad = Sharded(tuple(grad[a:b] for a, b in zip(bounds, bounds[1:])), grad.numel() * 4)
        master.apply(job, GradientResult(grad, torch.full((3,), float(t)), loss=1.0 / (t + 1)))


def params_of(master, shards) -> torch.Tensor:
    return shards.params if shards is not None else master.rule.params


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_every_rule_gives_one_servers_numbers_over_k_shards(name):
    want_master, _ = build(name, 0)
    want_master.start()
    drive(want_master, None, 60)
    want = params_sha256(want_master.rule.params)
    want_metrics = want_master.take_metrics()
    for k in (1, 2, 3):
        master, shards = build(name, k)
        master.start()
        drive(master, shards, 60)
        assert params_sha256(shards.params) == want, f"{name}, K = {k}"
        assert torch.equal(master.bn_stats, want_master.bn_stats)
        assert master.step == want_master.step and master.version == want_master.version
        metrics = master.take_metrics()
        assert metrics["mean_delay"] == want_metrics["mean_delay"]
        assert math.isclose(metrics["mean_gap"], want_metrics["mean_gap"], rel_tol=1e-5), (name, k)


@pytest.mark.parametrize("name", ["dana", "ssgd", "gap-aware", "dana-slim"])
def test_a_checkpoint_is_one_servers_and_restores_with_any_k(name):
    one, _ = build(name, 0)
    one.start()
    drive(one, None, 30)
    saved_one = one.state_dict()
    two, shards_two = build(name, 2)
    two.start()
    drive(two, shards_two, 30)
    saved_two = two.state_dict()
    assert saved_two.keys() == saved_one.keys()
    assert all(
        torch.equal(saved_two["rule"][k], v) if isinstance(v, torch.Tensor) else saved_two["rule"][k] == v
        for k, v in saved_one["rule"].items()
    )
    drive(one, None, 30, start=30)
    three, shards_three = build(name, 3)
    three.load_state_dict(saved_two)
    drive(three, shards_three, 30, start=30)
    assert params_sha256(shards_three.params) == params_sha256(one.rule.params)


def test_the_sequencer_state_restores_with_the_shards_own_snapshot():
    master, shards = build("dana", 2)
    master.start()
    drive(master, shards, 20)
    sequencer, shard_states = master.sequencer_state(), shards.states()
    drive(master, shards, 20, start=20)
    want = params_sha256(shards.params)
    shards.load_states(shard_states)
    master.load_sequencer_state(sequencer)
    drive(master, shards, 20, start=20)
    assert params_sha256(shards.params) == want


def test_bounds_are_aligned_balanced_and_cover_every_coordinate():
    assert shard_bounds(101, 1) == [0, 101]
    for d, k in ((101, 2), (25_600_000, 3), (1_000, 7), (5, 3)):
        bounds = shard_bounds(d, k)
        assert bounds[0] == 0 and bounds[-1] == d and bounds == sorted(bounds) and len(bounds) == k + 1
        assert all(b % ALIGN == 0 for b in bounds[:-1])
        sizes = [b - a for a, b in zip(bounds, bounds[1:])]
        assert max(sizes) - min(sizes) <= 2 * ALIGN or d < k * ALIGN
    with pytest.raises(ValueError, match="server_shards"):
        shard_bounds(10, 0)


def test_rule_state_split_and_join_are_inverse():
    rule = make_algorithm("dana", torch.randn(50), 3, 0.1)
    for k in range(3):
        rule.apply(k, torch.randn(50))
    shadow = make_algorithm("dana", torch.zeros(0), 3, 0.1)
    bounds = shard_bounds(50, 3)
    parts = split_rule_state(shadow, rule.state_dict(), bounds)
    assert [p["velocity"].shape for p in parts] == [(3, b - a) for a, b in zip(bounds, bounds[1:])]
    shadow.load_state_dict(split_rule_state(shadow, rule.state_dict(), [0, 0])[0])
    joined = join_rule_states(shadow, parts)
    assert all(
        torch.equal(joined[key], value) if isinstance(value, torch.Tensor) else joined[key] == value
        for key, value in rule.state_dict().items()
    )


def test_the_shard_law_catches_a_rule_that_reads_across_coordinates():
    @register_rule("test-clipped-sgd")
    class ClippedSGD(UpdateRule):
        """θ <- θ - η g / max(1, ||g||): the norm reads every coordinate."""

        def _apply(self, worker, grad, lr, point, delay):
            self.params.sub_(grad / max(1.0, float(grad.norm())), alpha=lr)

    try:
        with pytest.raises(AssertionError, match="per_coordinate = False"):
            shard_law("test-clipped-sgd")
        ClippedSGD.per_coordinate = False
        assert shard_law("test-clipped-sgd") is False
    finally:
        ALGORITHMS._entries.pop("test-clipped-sgd")  # not a rule the other tests should meet


def test_server_shards_are_refused_where_they_cannot_run():
    from dana_ray.config import TrialConfig
    from dana_ray.config.executors import check_supports
    from dana_ray.trial import run

    with pytest.raises(ValueError, match=r"^ray.server_shards: expected an integer in \[1, 256\], got 0$"):
        TrialConfig.from_dict({"ray": {"server_shards": 0}})
    with pytest.raises(
        ValueError,
        match=r"^ray.server_shards: executor 'local' holds θ in one process; server_shards 2 "
        r"needs an executor with server shards \(ray(, .+)?\)$",
    ):
        run({"ray": {"server_shards": 2}, "epochs": 1})
    with pytest.raises(ValueError, match=r"^tune\.executor: executor 'local' holds θ"):
        check_supports("local", ["round-robin"], 3, field="tune.executor", shards_field="tune.executor")

    @register_rule("test-normalised-sgd")
    class NormalisedSGD(UpdateRule):
        """θ <- θ - η g / ||g||: reads across coordinates, and says so."""

        per_coordinate = False

        def _apply(self, worker, grad, lr, point, delay):
            self.params.sub_(grad / float(grad.norm()), alpha=lr)

    try:
        with pytest.raises(
            ValueError,
            match=r"^ray.server_shards: algorithm 'test-normalised-sgd' reads across "
            r"coordinates \(per_coordinate = False\)",
        ):
            TrialConfig.from_dict({"algorithm": "test-normalised-sgd", "ray": {"server_shards": 2}})
        assert TrialConfig.from_dict({"algorithm": "test-normalised-sgd"}).option("server_shards") == 1
    finally:
        ALGORITHMS._entries.pop("test-normalised-sgd")


def test_the_ray_reservation_holds_a_sequencer_and_k_shards_spread_over_nodes():
    from dana_ray.config import EXECUTORS, all_options

    spec = EXECUTORS["ray"]
    settings = dict(
        all_options({}), num_actors=2, cpus_per_actor=1.0, gpus_per_actor=0.5, server_cpus=2.0, server_shards=3
    )
    assert spec.bundles(settings, 4, 0.25) == [{"CPU": 0.25}] + [{"CPU": 2.0}] * 4 + [{"CPU": 1.0, "GPU": 0.5}] * 2
    pinned = dict(settings, server_resources={"server": 1})
    # the sequencer holds no θ: only the shards (or K = 1's server) are pinned
    assert spec.bundles(pinned, 4, 0.25)[1:5] == [{"CPU": 2.0}] + [{"CPU": 2.0, "server": 1}] * 3
    assert spec.bundles(dict(pinned, server_shards=1), 4, 0.25)[1] == {"CPU": 2.0, "server": 1}
    assert "(1 + 3 shards) x server_cpus 2 (each shard + 1 server)" in spec.describe(pinned, 4, 0.25)
    assert spec.strategy(settings) == "SPREAD" and spec.strategy(dict(settings, server_shards=1)) == "PACK"
    assert "(1 + 3 shards) x server_cpus 2" in spec.describe(settings, 4, 0.25)
    assert len(spec.bundles(dict(settings, server_shards=1), 4, 0.25)) == 4
