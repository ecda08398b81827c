"""On several nodes (``ray.cluster_utils.Cluster`` on this machine): actors spread over nodes, a node lost
mid-trial with and without room for its actors, and Tune resuming the trial when room returns.

Each test starts its own cluster (a 1-CPU head holding the driver's ParameterServer, and 1-CPU nodes each
holding one gradient actor) and shuts it down; they run before the session's shared Ray instance.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from helpers import trial_dict
from ray import tune

from dana_ray.trial import run

pytestmark = pytest.mark.multinode

# each gradient actor takes a whole 1-CPU node; the server takes the head
BASE = trial_dict(
    model="cnn",
    model_options={"channels": 8},
    dataset="digits",
    batch_size=32,
    epochs=2,
    lr=0.05,
    lr_decay_epochs=[],
    cpu_threads=1,
    algorithm="dana",
    num_workers=4,
    num_actors=2,
    cpus_per_actor=1.0,
    server_cpus=1.0,
    actor_start_timeout_s=10.0,
)


@pytest.fixture
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def start(cluster, nodes: int) -> None:
    import ray

    for _ in range(nodes):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)


def node_of(actor_name: str) -> str:
    import ray

    return ray.get(ray.get_actor(actor_name).ready.remote())["node_id"]


def remove_node_of(cluster, actor_name: str) -> str:
    node_id = node_of(actor_name)
    cluster.remove_node(next(n for n in cluster.list_all_nodes() if n.node_id == node_id))
    return node_id


@pytest.fixture(scope="module")
def local_sha():
    return run(BASE)["params_sha256"]


def test_actors_on_different_nodes_compute_the_local_run(cluster, local_sha):
    start(cluster, 2)
    nodes = []
    result = run(
        BASE,
        executor="ray",
        name="spread",
        callback=lambda row: (
            nodes.extend(node_of(f"spread/Worker-{k}") for k in range(2)) if row["epoch"] == 1 else None
        ),
    )
    assert len(set(nodes)) == 2 and cluster.head_node.node_id not in nodes
    assert result["params_sha256"] == local_sha


def test_results_on_other_nodes_are_pulled_ahead_and_change_nothing(cluster):
    """Gradients over 100 KiB stay in their actor's object store until asked for: the server asks for all
    those in flight at once (ray.wait, fetch_local), so they are on its node before their turn."""
    import ray

    from dana_ray.engine.ray.transport import INLINE_BYTES

    start(cluster, 2)
    config = dict(BASE, model_options={"channels": 64}, epochs=1)
    pulled = []

    def on_epoch(row):
        server = ray.get_actor("pull/ParameterServer")
        pulled.append(ray.get(server.__ray_call__.remote(lambda server: server.dispatcher.pulled_ahead)))

    result = run(config, executor="ray", name="pull", callback=on_epoch)
    assert result["num_params"] * 4 > INLINE_BYTES and pulled[0] > 0
    assert result["params_sha256"] == run(config)["params_sha256"]


def test_a_lost_node_with_room_elsewhere_costs_one_replacement_on_a_live_node(cluster, local_sha):
    start(cluster, 3)  # one node to spare
    lost, placed = [], []

    def on_epoch(row):
        if row["epoch"] == 1:
            lost.append(remove_node_of(cluster, "lost/Worker-0"))
        else:
            placed.append(node_of("lost/Worker-0.1"))

    result = run(BASE, executor="ray", name="lost", callback=on_epoch)
    assert result["history"][-1]["actor_restarts"] == 1  # the replacement was not sent to the dead node first
    assert placed[0] != lost[0]
    assert result["params_sha256"] == local_sha


def test_a_lost_node_with_no_room_left_fails_the_trial_in_bounded_time_with_one_message(cluster):
    start(cluster, 2)
    removed = []

    def on_epoch(row):
        removed.append(time.perf_counter())
        remove_node_of(cluster, "full/Worker-0")

    with pytest.raises(
        Exception,
        match=r"full/Worker-0\.1 was not running 10 s after it was asked to replace its "
        r"predecessor, which died .*no live node has room for it \(1 CPU\)",
    ):
        run(BASE, executor="ray", name="full", callback=on_epoch)
    assert time.perf_counter() - removed[0] < 60


@pytest.mark.slow  # 54 s; the default run resumes a failed trial from its checkpoint in tests/test_sweep.py
def test_tune_resumes_the_trial_from_its_checkpoint_when_room_returns(cluster, tmp_path, local_sha):
    """The node of one of the trial's actors is removed after epoch 1 and nothing else has room: the trial
    fails after actor_start_timeout_s; Tune retries it; its placement group waits until a node joins (added
    when Tune reports the trial recovering), and the trial resumes from epoch 1 to the undisturbed result."""
    from dana_ray.experiments.grid import Grid
    from dana_ray.report import load_experiment
    from dana_ray.sweep.tuner import make_tuner

    start(cluster, 2)
    _TUNE_TEST["cluster"], events = cluster, _TUNE_TEST.setdefault("events", [])
    events.clear()

    fixed = {k: v for k, v in BASE.items() if k not in ("algorithm", "num_workers")}
    grid = Grid(
        "resume",
        "resume.yaml",
        "node loss",
        None,
        fixed,
        {"algorithm": ["dana"], "num_workers": [4], "schedule": ["round-robin"], "seed": [0]},
        {"max_failures": 2, "checkpoint_every": 1, "trial_cpus": 0.0},
    )
    results = make_tuner(grid, str(tmp_path), "resume", callbacks=[_LoseANodeThenAddOne()]).fit()
    assert [kind for kind, _ in events] == ["removed", "added"] and not results.errors
    assert results[0].metrics["params_sha256"] == local_sha
    assert load_experiment(str(tmp_path / "resume"))["finished"].all()
    reported = [json.loads(line)["epoch"] for line in open(os.path.join(results[0].path, "result.json"))]
    assert reported[0] == 1 and reported[-1] == 2 and 1 not in reported[1:]  # resumed after epoch 1


# Tune saves its callbacks with the experiment, so the one above reaches the cluster through this module
# rather than holding it (a cluster cannot be pickled).
_TUNE_TEST: dict = {}


class _LoseANodeThenAddOne(tune.Callback):
    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result["epoch"] == 1 and not _TUNE_TEST["events"]:
            cluster = _TUNE_TEST["cluster"]  # the node of an actor, not the head (where the driver is)
            actor = next(
                f"resume/{trial}/Worker-{k}"
                for k in range(2)
                if node_of(f"resume/{trial}/Worker-{k}") != cluster.head_node.node_id
            )
            _TUNE_TEST["events"].append(("removed", remove_node_of(cluster, actor)))

    def on_trial_recover(self, iteration, trials, trial, **info):
        # one node, once: on a loaded machine the node may join after the retried trial's actors gave up
        # waiting (actor_start_timeout_s), and Tune's next retry then finds it
        if not any(kind == "added" for kind, _ in _TUNE_TEST["events"]):
            _TUNE_TEST["events"].append(("added", _TUNE_TEST["cluster"].add_node(num_cpus=1).node_id))


def run_sharded_in_its_placement_group(cfg, name: str) -> tuple[list[str], str]:
    """A sharded trial run in the placement group Tune would reserve for it (the ray executor's bundles and
    strategy): (the shards' nodes, params_sha256)."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    from dana_ray.config.executors import EXECUTORS
    from dana_ray.engine.ray.executor import RayExecutor

    settings = cfg.settings()
    spec = EXECUTORS["ray"]
    bundles = spec.bundles(settings, cfg.num_workers, 0.0)[1:]  # Tune leaves an empty trial bundle out
    group = placement_group(bundles, strategy=spec.strategy(settings))
    ray.get(group.ready())
    executor = RayExecutor(cfg, name, placement_group=group)
    try:
        shards = [node_of(f"{name}/Shard-{k}") for k in range(cfg.section("ray").server_shards)]
        for _ in range(cfg.epochs):
            executor.run_epoch(executor.steps_per_epoch)
        return shards, executor.params_sha256()
    finally:
        executor.close()
        remove_placement_group(group)


def test_server_shards_land_on_distinct_nodes_and_compute_one_servers_run(cluster, local_sha):
    """The trial's placement group, as Tune would reserve it (SPREAD with K > 1), over three nodes with room
    for several bundles each: the two shards are on two nodes (with PACK they share one), and the run is the
    single server's."""
    import ray

    from dana_ray.config import TrialConfig
    from dana_ray.config.executors import EXECUTORS

    for _ in range(2):
        cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    cfg = TrialConfig.from_dict(trial_dict(BASE, server_shards=2, server_cpus=0.5, cpus_per_actor=0.5))
    shards, sha = run_sharded_in_its_placement_group(cfg, "shards")
    assert EXECUTORS["ray"].strategy(cfg.settings()) == "SPREAD" and len(set(shards)) == 2
    assert sha == local_sha


def test_server_resources_give_each_shard_a_server_node_of_its_own(cluster, local_sha):
    """``ray.server_resources: {server: 1}`` on a cluster whose server nodes declare one ``server`` each
    (cluster.yaml's server node type): the two shards run one on each server node, although another node has
    room for both (and SPREAD alone may pair them); the run is the single server's."""
    import ray

    from dana_ray.config import TrialConfig

    cluster.add_node(num_cpus=3)
    server_nodes = {cluster.add_node(num_cpus=1, resources={"server": 1}).node_id for _ in range(2)}
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    cfg = TrialConfig.from_dict(
        trial_dict(BASE, server_shards=2, server_cpus=0.25, cpus_per_actor=1.0, server_resources={"server": 1})
    )
    shards, sha = run_sharded_in_its_placement_group(cfg, "pinned")
    assert len(shards) == 2 and set(shards) == server_nodes
    assert sha == local_sha
