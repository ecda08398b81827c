"""``server_shards`` on Ray: K shard actors and a sequencer give one server's numbers, arrival runs, a shard
that dies mid-epoch is recovered to the same numbers, checkpoints restore with any K, and the sequencer
moves the same few bytes per update whatever d. (Every rule, Ray-free: ``tests/test_shards.py``.)"""

from __future__ import annotations

import os

import pytest
from helpers import trial_dict

from dana_ray.algorithms import BUILTIN_ALGORITHMS, is_single_worker
from dana_ray.trial import run

pytestmark = pytest.mark.usefixtures("ray_session")

BASE = trial_dict(
    model="cnn",
    model_options={"channels": 8},
    dataset="digits",
    batch_size=32,
    epochs=2,
    lr=0.05,
    lr_decay_epochs=[1],
    cpu_threads=1,
    cpus_per_actor=0.25,
    server_cpus=0.25,
    max_steps_per_epoch=25,
    num_workers=4,
    num_actors=2,
)


@pytest.mark.parametrize(
    "algorithm,schedule,shards", [("dana", "gamma", 3), ("ssgd", "round-robin", 2), ("dana-slim", "block-random", 2)]
)
def test_k_shards_give_one_servers_numbers(algorithm, schedule, shards):
    """Against the local executor, which equals the Ray executor's single server (``test_ray_executor``)."""
    config = dict(BASE, algorithm=algorithm, schedule=schedule)
    one = run(config)
    sharded = run(trial_dict(config, server_shards=shards), executor="ray")
    assert sharded["params_sha256"] == one["params_sha256"]
    assert sharded["test_error"] == one["test_error"]
    assert [r["mean_delay"] for r in sharded["history"]] == [r["mean_delay"] for r in one["history"]]
    assert sharded["history"][-1]["mean_gap"] == pytest.approx(one["history"][-1]["mean_gap"], rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", BUILTIN_ALGORITHMS)
def test_every_builtin_rule_on_ray_shards_gives_one_servers_numbers(algorithm):
    """All of them on real shard actors (in process, every registered rule: ``tests/test_shards.py``)."""
    n = 1 if is_single_worker(algorithm) else 3
    config = trial_dict(
        BASE, algorithm=algorithm, num_workers=n, num_actors=2, schedule="gamma" if n > 1 else "round-robin"
    )
    want = run(config)["params_sha256"]
    assert [run(trial_dict(config, server_shards=k), executor="ray")["params_sha256"] for k in (2, 3)] == [want, want]


def test_arrival_order_runs_with_two_shards():
    result = run(trial_dict(BASE, algorithm="dana", schedule="arrival", server_shards=2), executor="ray")
    assert result["steps"] == 2 * 25 and not result["diverged"]
    assert sum(result["history"][-1]["delay_histogram"]) == 25


class CrashingShard:
    """A shard actor class whose shard ``shard`` exits on its ``at``-th ``apply``, once (a marker file)."""

    def __init__(self, marker: str, shard: int, at: int) -> None:
        self.marker, self.shard, self.at = marker, shard, at

    def remote_class(self):
        import ray

        from dana_ray.engine.ray.shards import ShardActor

        marker, crash_shard, at = self.marker, self.shard, self.at

        class Crashing(ShardActor):
            def reset(self, config, start, stop, steps_per_epoch, params):
                self.applied, self.crashes = 0, start == 0 if crash_shard == 0 else start > 0
                super().reset(config, start, stop, steps_per_epoch, params)

            def apply(self, worker, grad, delay):
                self.applied += 1
                if self.crashes and self.applied == at and not os.path.exists(marker):
                    open(marker, "w").close()
                    os._exit(1)
                return super().apply(worker, grad, delay)

        return ray.remote(Crashing)


def test_a_shard_dying_mid_epoch_is_recovered_to_the_same_numbers(tmp_path):
    from dana_ray.config import TrialConfig
    from dana_ray.engine.ray.executor import RayExecutor

    config = trial_dict(BASE, algorithm="dana", schedule="gamma", server_shards=2)
    crash = CrashingShard(str(tmp_path / "crashed"), shard=1, at=30)  # in the second epoch
    executor = RayExecutor(TrialConfig.from_dict(config), "shard-crash", shard_class=crash.remote_class())
    try:
        rows = [executor.run_epoch(25) for _ in range(2)]
        sha = executor.params_sha256()
    finally:
        executor.close()
    assert os.path.exists(crash.marker)
    assert rows[0]["actor_restarts"] == 0 and rows[1]["actor_restarts"] == 1
    assert rows[1]["step"] == 50 and rows[1]["gradients"] == 25
    assert sha == run(trial_dict(config, server_shards=1))["params_sha256"]


def test_a_dead_shard_with_worker_side_state_fails_the_trial_in_one_line(tmp_path):
    from dana_ray.config import TrialConfig
    from dana_ray.engine.ray.executor import RayExecutor

    config = trial_dict(BASE, algorithm="dana-slim", server_shards=2)
    crash = CrashingShard(str(tmp_path / "crashed"), shard=0, at=5)
    executor = RayExecutor(TrialConfig.from_dict(config), "shard-slim", shard_class=crash.remote_class())
    try:
        with pytest.raises(Exception, match="shard-slim/Shard-0 died; rule 'dana-slim' keeps worker-side state"):
            executor.run_epoch(25)
    finally:
        executor.close()


def test_a_checkpoint_restores_with_another_number_of_shards():
    config = dict(BASE, algorithm="gap-aware", schedule="block-random")
    states = []
    whole = run(trial_dict(config, server_shards=2), executor="ray", checkpoint=states.append)
    resumed = run(trial_dict(config, server_shards=3), executor="ray", resume=states[0])
    assert resumed["params_sha256"] == whole["params_sha256"]


def test_the_sequencer_moves_no_d_sized_array():
    """Per update the sequencer reads the small result (BatchNorm statistics, loss, seconds) and, at the
    epoch's end, K partial sums of 8 bytes; once an epoch it sends the statistics for the evaluation. Nothing
    scales with d (at 9x the parameters, the same formula); a single server moves the point and gradient."""
    import ray

    through = {}
    for channels, shards in ((4, 2), (16, 2), (16, 1)):
        name = f"bytes-{channels}-{shards}"

        def on_epoch(row, name=name, key=(channels, shards)):
            server = ray.get_actor(f"{name}/ParameterServer")
            through[key] = ray.get(
                server.__ray_call__.remote(
                    lambda s: (
                        s.traffic.bytes_through_server,
                        s.master.step,
                        s.num_params,
                        s.master.bn_stats.numel() * 4,
                    )
                )
            )

        run(
            trial_dict(BASE, model_options={"channels": channels}, algorithm="dana", epochs=1, server_shards=shards),
            executor="ray",
            name=name,
            callback=on_epoch,
        )
    assert through[(16, 2)][2] > 9 * through[(4, 2)][2]
    for channels in (4, 16):
        moved, steps, d, bn = through[(channels, 2)]
        assert moved == steps * (bn + 16 + 8 * 2) + bn
    moved, steps, d, bn = through[(16, 1)]
    assert moved >= steps * 2 * 4 * d  # one server: each update's point out and gradient in


def test_a_shard_with_no_room_fails_the_trial_in_bounded_time_with_one_line():
    """Two CPUs here: the sequencer, one actor and one shard fit; the other shard does not (which one is Ray's
    choice). The timeout leaves the actor, which imports torch as it starts, time to start on a busy machine
    (2 s did not, once, in a full CI run)."""
    import time

    config = trial_dict(
        BASE,
        algorithm="dana",
        num_actors=1,
        cpus_per_actor=0.05,
        server_cpus=0.7,
        server_shards=2,
        actor_start_timeout_s=10.0,
    )
    started = time.perf_counter()
    with pytest.raises(
        Exception,
        match=r"no-room/Shard-[01] was not running 10 s after it was asked to start the trial: "
        r"no live node has room for it \(0\.7 CPU\)",
    ):
        run(config, executor="ray", name="no-room")
    assert time.perf_counter() - started < 60


def test_a_shard_dying_before_its_epoch_start_snapshot_fails_the_trial_in_one_true_line(tmp_path):
    """Shard 1 exits as it is asked for its second epoch's starting state (the snapshot a recovery restores):
    no snapshot exists, so the trial fails, in one line that says so (a sweep resumes it from its last
    checkpoint) and does not blame a lost node."""
    import ray

    from dana_ray.config import TrialConfig
    from dana_ray.core.cli import one_line
    from dana_ray.engine.ray.executor import RayExecutor
    from dana_ray.engine.ray.shards import ShardActor

    marker = str(tmp_path / "crashed")

    class DiesAtTheBoundary(ShardActor):
        def reset(self, config, start, stop, steps_per_epoch, params):
            self.snapshots, self.crashes = 0, start > 0
            super().reset(config, start, stop, steps_per_epoch, params)

        def state_dict(self):
            self.snapshots += 1
            if self.crashes and self.snapshots == 2 and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)
            return super().state_dict()

    config = trial_dict(BASE, algorithm="dana", server_shards=2)
    executor = RayExecutor(TrialConfig.from_dict(config), "boundary", shard_class=ray.remote(DiesAtTheBoundary))
    try:
        executor.run_epoch(25)
        with pytest.raises(RuntimeError) as raised:
            executor.run_epoch(25)
    finally:
        executor.close()
    assert os.path.exists(marker)
    assert one_line(raised.value) == (  # what the sweep's console prints of it
        "RuntimeError: boundary/Shard-1 died at the start of an epoch, before its snapshot was taken; the trial "
        "goes on from its last checkpoint"
    )
