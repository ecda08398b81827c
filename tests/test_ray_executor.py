"""The Ray executor: same numbers as the local executor, faults, restore, arrival order, names, bad data.

All tests share one Ray instance (the ``ray_session`` fixture: 2 CPUs, no dashboard). Actors ask for a
quarter CPU each so a server and 4 actors fit.
"""

from __future__ import annotations

import os

import pytest
from helpers import trial_dict

from dana_ray.trial import run

pytestmark = pytest.mark.usefixtures("ray_session")

# cpu_threads=1 everywhere: CPU kernels may sum in another order with another thread count.
BASE = trial_dict(
    model="cnn",
    model_options={"channels": 8},
    dataset="digits",
    batch_size=32,
    epochs=1,
    lr=0.05,
    lr_decay_epochs=[],
    cpu_threads=1,
    cpus_per_actor=0.25,
    server_cpus=0.25,
)


@pytest.fixture(scope="module")
def local_dana4():
    return run(dict(BASE, algorithm="dana", num_workers=4))


@pytest.mark.parametrize("num_actors", [1, 4])
def test_ray_equals_local_for_any_number_of_actors(local_dana4, num_actors):
    """The same numbers and the same simulated clock; and every applied job's compute time, for a trace."""
    recorded: list[tuple] = []
    config = trial_dict(BASE, algorithm="dana", num_workers=4, num_actors=num_actors)
    result = run(config, executor="ray", job_times=recorded.extend)
    assert result["params_sha256"] == local_dana4["params_sha256"]
    assert result["test_error"] == local_dana4["test_error"]
    assert result["mean_delay"] == local_dana4["mean_delay"]
    assert result["sim_time"] == local_dana4["sim_time"] > 0
    assert 0.0 <= result["history"][-1]["server_busy"] <= 1.0
    assert len(recorded) == result["steps"] and {r[4] for r in recorded} == set(range(num_actors))
    assert all(r[2] == 1 and r[3] > 0 and len(r[5]) > 12 for r in recorded)  # steps, seconds, node id


def test_default_compute_settings_give_the_same_numbers_on_both_executors():
    """No thread count, no CPU sizes given: the local executor's process computes on as many torch threads as a
    gradient actor reserving ``cpus_per_actor`` (1 CPU: 1 thread), so the numbers are equal bitwise. Before,
    the local executor kept torch's default (2 threads on a 2-core machine) and only ``cpu_threads: 1`` agreed."""
    import torch

    config = trial_dict(
        {k: v for k, v in BASE.items() if k not in ("compute", "ray")}, algorithm="dana", num_workers=2, num_actors=1
    )
    before = torch.get_num_threads()
    local = run(config)
    assert torch.get_num_threads() == before  # the local executor gives the process its threads back
    remote = run(config, executor="ray")
    assert (remote["params_sha256"], remote["test_error"]) == (local["params_sha256"], local["test_error"])


def test_points_over_100_kib_travel_through_the_object_store_and_change_nothing():
    """Every paper model's point is over Ray's 100 KiB inline limit: it is ray.put once and passed by
    reference (76,490 parameters here: 306 KB)."""
    from dana_ray.engine.ray.transport import INLINE_BYTES

    config = trial_dict(BASE, model_options={"channels": 64}, algorithm="dana-dc", num_workers=3, num_actors=2)
    on_ray = run(config, executor="ray")
    assert on_ray["num_params"] * 4 > INLINE_BYTES
    assert on_ray["params_sha256"] == run(config)["params_sha256"]


@pytest.mark.parametrize(
    "algorithm,schedule", [("ssgd", "round-robin"), ("nag-asgd", "gamma"), ("multi-asgd", "block-random")]
)
def test_ray_equals_local_for_other_rules_and_schedules(algorithm, schedule):
    config = dict(BASE, algorithm=algorithm, num_workers=3, schedule=schedule)
    on_ray, local = run(config, executor="ray"), run(config)
    assert on_ray["params_sha256"] == local["params_sha256"] and on_ray["sim_time"] == local["sim_time"]


def test_folder_data_prefetched_on_actors_equals_local(fake_imagenet):
    """Each gradient actor decodes on its reserved CPUs and prepares batches ahead: the local sha."""
    config = trial_dict(
        BASE,
        model_options={},
        dataset="imagenet",
        data_dir=fake_imagenet,
        batch_size=4,
        epochs=2,
        dataset_options={"image_size": 16},
        algorithm="dana",
        num_workers=3,
        num_actors=2,
    )
    assert run(config, executor="ray")["params_sha256"] == run(trial_dict(config, prefetch_batches=0))["params_sha256"]


def test_a_killed_worker_actor_is_replaced_and_nothing_changes(local_dana4):
    import ray

    name = "fault-test"
    killed = []

    def kill_worker_0(row):
        if row["epoch"] == 1:
            actor = ray.get_actor(f"{name}/Worker-0")
            ray.kill(actor)
            killed.append(actor)

    config = trial_dict(BASE, algorithm="dana", num_workers=4, num_actors=2, epochs=2)
    rows = []
    faulty = run(config, executor="ray", name=name, callback=lambda r: (rows.append(r), kill_worker_0(r)))
    assert killed and rows[-1]["actor_restarts"] == 1
    assert faulty["params_sha256"] == run(config)["params_sha256"]
    assert faulty["steps"] == 2 * (1437 // 32)


class CrashOnce:
    """A Worker whose process exits in the middle of one chosen job, the first time only (a marker file)."""

    def __init__(self, marker, worker, batch):
        self.marker, self.worker, self.batch = marker, worker, batch

    def remote_class(self):
        import ray

        from dana_ray.engine.ray.actors import Worker

        marker, crash_worker, crash_batch = self.marker, self.worker, self.batch

        def crash_if_chosen(workers, batches):
            if (crash_worker, crash_batch) in zip(workers, batches) and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)

        class Crashing(Worker):
            def compute(self, worker, batch, point, lr=0.0):
                crash_if_chosen([worker], [batch])
                return super().compute(worker, batch, point, lr)

            def compute_many(self, workers, batches, *points, **options):
                crash_if_chosen(workers, batches)
                return super().compute_many(workers, batches, *points, **options)

        return ray.remote(Crashing)


@pytest.mark.parametrize("jobs_per_call", [1, 3])
def test_an_actor_dying_mid_job_loses_and_doubles_nothing(tmp_path, local_dana4, jobs_per_call):
    """Also when the job dies with the other jobs of its call (``jobs_per_call``): each is sent again."""
    from dana_ray.config import TrialConfig
    from dana_ray.engine.ray.executor import RayExecutor

    cfg = TrialConfig.from_dict(
        trial_dict(BASE, algorithm="dana", num_workers=4, num_actors=2, jobs_per_call=jobs_per_call)
    )
    crash = CrashOnce(str(tmp_path / "crashed"), worker=2, batch=5)
    executor = RayExecutor(cfg, "crash-test", worker_class=crash.remote_class())
    try:
        row = executor.run_epoch(executor.steps_per_epoch)
        sha = executor.params_sha256()
    finally:
        executor.close()
    assert os.path.exists(crash.marker) and row["actor_restarts"] == 1
    assert row["step"] == 1437 // 32 and row["gradients"] == 1437 // 32
    assert sha == local_dana4["params_sha256"]


def test_restored_server_state_finishes_identically():
    config = trial_dict(BASE, algorithm="dana", num_workers=4, num_actors=2, epochs=2, schedule="gamma")
    states = []
    whole = run(config, executor="ray", checkpoint=states.append)
    resumed = run(config, executor="ray", resume=states[0])
    assert resumed["params_sha256"] == whole["params_sha256"] == run(config)["params_sha256"]


@pytest.mark.parametrize("algorithm", ["dana-slim", "diloco", "async-diloco"])
def test_worker_side_state_stays_with_its_actor_and_restores(algorithm):
    """Worker-side state (dana-slim's momenta; the local-steps rules' inner optimizers, jobs of 4 batches):
    logical worker i stays on actor i % P; a checkpoint gathers it from the actors (as of each worker's next
    job, computed or not; for diloco mid-round: 11 jobs an epoch, rounds of 5) and a restored run on Ray
    finishes like local."""
    config = trial_dict(BASE, algorithm=algorithm, num_workers=5, num_actors=2, epochs=2, schedule="gamma")
    states = []
    whole = run(config, executor="ray", checkpoint=states.append)
    assert sorted(states[0]["master"]["worker_side"]) == [0, 1, 2, 3, 4]
    local = run(config)
    resumed = run(config, executor="ray", resume=states[0])
    assert resumed["params_sha256"] == whole["params_sha256"] == local["params_sha256"]


def test_a_dead_actor_holding_worker_side_state_fails_the_trial_clearly():
    import ray

    name = "slim-fault"

    def kill_worker_0(row):
        ray.kill(ray.get_actor(f"{name}/Worker-0"))

    with pytest.raises(ray.exceptions.RayTaskError, match=r"died holding the worker-side state of rule 'dana-slim'"):
        run(
            trial_dict(BASE, algorithm="dana-slim", num_workers=2, num_actors=2, epochs=2),
            executor="ray",
            name=name,
            callback=kill_worker_0,
        )


@pytest.mark.parametrize("algorithm", ["dana", "dana-slim"])
def test_vmap_jobs_on_ray_follows_one_by_one(local_dana4, algorithm):
    """Jobs sent in groups of up to 3 per call (vmap on the actor): float rounding apart, the run is the
    one-by-one run (each job's result depends only on the job)."""
    config = trial_dict(BASE, algorithm=algorithm, num_workers=4, num_actors=2)
    reference = local_dana4 if algorithm == "dana" else run(config)
    batched = run(trial_dict(config, vmap_jobs=3), executor="ray")
    assert batched["steps"] == reference["steps"] and batched["mean_delay"] == reference["mean_delay"]
    assert batched["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-3)


@pytest.mark.parametrize("algorithm,num_actors", [("dana", 1), ("dana-slim", 2)])
def test_jobs_per_call_sends_several_jobs_in_one_call_and_changes_nothing(algorithm, num_actors):
    """Up to 4 ready jobs go to an actor in one call (for dana-slim, only jobs of logical workers that actor
    holds); each is computed as alone, so the run is the local run, bit for bit."""
    import ray

    from dana_ray.config import TrialConfig
    from dana_ray.engine.ray.actors import Worker
    from dana_ray.engine.ray.executor import RayExecutor

    class Counting(Worker):
        calls = jobs = 0

        def compute(self, worker, batch, point, lr=0.0):
            self.calls, self.jobs = self.calls + 1, self.jobs + 1
            return super().compute(worker, batch, point, lr)

        def compute_many(self, workers, batches, *points, **options):
            self.calls, self.jobs = self.calls + 1, self.jobs + len(workers)
            return super().compute_many(workers, batches, *points, **options)

        def counts(self):
            return self.calls, self.jobs

    config = trial_dict(BASE, algorithm=algorithm, num_workers=4, num_actors=num_actors)
    executor = RayExecutor(
        TrialConfig.from_dict(trial_dict(config, jobs_per_call=4)),
        f"per-call-{algorithm}",
        worker_class=ray.remote(Counting),
    )
    try:
        executor.run_epoch(executor.steps_per_epoch)
        sha = executor.params_sha256()
        counts = [ray.get(ray.get_actor(f"per-call-{algorithm}/Worker-{k}").counts.remote()) for k in range(num_actors)]
    finally:
        executor.close()
    calls, jobs = map(sum, zip(*counts))
    assert jobs >= executor.steps_per_epoch and calls <= jobs / 2  # at least 2 jobs a call on average
    assert sha == run(config)["params_sha256"]


def test_fused_updates_on_ray_equal_fused_updates_locally():
    """The server actor compiles its one-pass update and runs it exactly as the driver does (same sha). The
    run is the eager run up to float rounding."""
    config = trial_dict(BASE, algorithm="dana-dc", num_workers=4, num_actors=2, fused_updates=True)
    local, on_ray = run(config), run(config, executor="ray")
    assert on_ray["params_sha256"] == local["params_sha256"]
    eager = run(trial_dict(config, fused_updates=False))
    assert local["params_sha256"] != eager["params_sha256"]  # the compiled kernel ran: rounding differs
    assert local["train_loss"] == pytest.approx(eager["train_loss"], rel=1e-3)


def test_the_server_updates_with_the_cpus_it_reserves():
    """Ray starts an actor with one torch thread whatever its num_cpus; the server's memory-bound update
    should use all of server_cpus (here the class is built in this process, without Ray)."""
    import torch

    from dana_ray.engine.ray.server import ParameterServer

    before = torch.get_num_threads()
    try:
        for server_cpus, threads in [(4, 4), (1.6, 2), (0.25, 1)]:
            ParameterServer(trial_dict(BASE, server_cpus=server_cpus), "threads-test", num_actors=1)
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)


def test_arrival_order_applies_whatever_arrives_first():
    rows = []
    result = run(
        trial_dict(BASE, algorithm="dana", num_workers=4, num_actors=2, schedule="arrival"),
        executor="ray",
        callback=rows.append,
    )
    assert result["steps"] == 1437 // 32 and not result["diverged"]
    assert result["mean_delay"] > 0 and rows[0]["max_delay"] >= 1


def test_actors_are_named_per_trial():
    import ray

    seen = []

    def names(row):
        seen.extend(a["name"] for a in ray.util.list_named_actors(all_namespaces=True))

    run(trial_dict(BASE, num_workers=2, num_actors=2), executor="ray", name="named", callback=names)
    assert {"named/ParameterServer", "named/Worker-0", "named/Worker-1"} <= set(seen)


def test_divergence_is_reported_not_raised():
    result = run(trial_dict(BASE, algorithm="asgd", num_workers=2, num_actors=1, lr=1e6, epochs=2), executor="ray")
    assert result["diverged"] and result["test_error"] == pytest.approx(90.0)


def test_missing_data_names_the_host_and_path(tmp_path):
    with pytest.raises(
        RuntimeError,
        match=r"Worker-0 could not start: .*data_dir: cifar10 needs the directory "
        r".*cifar-10-batches-py.* \(on host .*\)",
    ):
        run(
            trial_dict(
                BASE, model="resnet20", model_options={}, dataset="cifar10", data_dir=str(tmp_path), num_actors=1
            ),
            executor="ray",
        )


def test_cli_runs_on_ray(capsys):
    from dana_ray.trial import main

    code = main(
        [
            "--executor",
            "ray",
            "--num-workers",
            "2",
            "--num-actors",
            "1",
            "--epochs",
            "1",
            "--quiet",
            "--cpus-per-actor",
            "0.25",
            "--server-cpus",
            "0.25",
            "--cpu-threads",
            "1",
            "--lr-decay-epochs",
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:2] == ["dana", "2"]


def test_the_trial_cli_on_ray_sizes_what_it_leaves_unset_to_a_cluster_that_cannot_grow(capsys):
    """``python -m dana_ray.trial --executor ray`` on a laptop: the default reservations (1 CPU for the server
    and for each of N actors) do not fit 2 CPUs, so ``num_actors`` is sized as a sweep's is, and the run
    starts at once (it used to wait ``actor_start_timeout_s`` for room, then fail); a custom resource the
    cluster lacks is refused in one line before anything runs."""
    from dana_ray.trial import main

    flags = [
        "--executor",
        "ray",
        "--model",
        "cnn",
        "--model-options",
        '{"channels": 8}',
        "--algorithm",
        "dana",
        "--num-workers",
        "4",
        "--epochs",
        "1",
        "--max-steps-per-epoch",
        "3",
        "--quiet",
        "--actor-start-timeout-s",
        "30",
    ]
    assert main(flags) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "resources: sized to this cluster (2 CPUs and 0 GPUs, which cannot grow): num_actors 1 "
        "(set them on the command line to choose)\n"
    )
    assert main(flags + ["--server-resources", "{server: 1}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: resources: a trial of N=4 reserves 1 server (ray.server_resources)")
    assert len(err.splitlines()) == 1


def test_a_pooled_server_that_cannot_be_reset_is_reported_and_replaced(caplog):
    """The pool of a process that runs trial after trial: a pooled server whose reset fails (its actors died
    with their node, say) is not silently dropped: a note names the trial and the cause, the old server is
    closed, and a new one runs the trial."""
    from dana_ray.config import TrialConfig
    from dana_ray.engine.ray.executor import POOL, RayExecutor

    cfg = TrialConfig.from_dict(trial_dict(BASE, algorithm="dana", num_workers=2, num_actors=1))
    closed = []

    class Broken:
        name = "broken"

        def _reset(self, cfg, name, metrics):
            raise RuntimeError("the pooled ParameterServer died")

        def close(self, reusable=False):
            closed.append(self)

    POOL.keep(RayExecutor._key(cfg, None, False), Broken())
    with caplog.at_level("WARNING", logger="dana_ray"):
        executor = RayExecutor.launch(cfg, "after-broken", reuse=True)
    try:
        assert isinstance(executor, RayExecutor) and len(closed) == 1 and POOL.idle is None
        assert (
            "after-broken: the pooled server of the previous trial could not be reused (the pooled "
            "ParameterServer died); starting a new one"
        ) in caplog.text
    finally:
        executor.close()


def test_an_actor_slow_to_start_in_its_reservation_is_said_to_be_slow_not_without_room():
    """An actor whose placement group is in place has room: past ``actor_start_timeout_s`` it is still in its
    constructor (a data set loading from a network file system), and the message says so; without a
    placement group the message names both causes."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from dana_ray.engine.ray.fleet import await_running

    @ray.remote(num_cpus=0.1)
    class SlowToStart:
        def __init__(self) -> None:
            import time

            time.sleep(60)  # what is tested: a constructor slower than the timeout (the actor is killed)

        def ready(self) -> dict:
            return {"node_id": ray.get_runtime_context().get_node_id()}

    group = placement_group([{"CPU": 0.1}])
    ray.get(group.ready())
    try:
        for where, says in [
            (group, r"slow/0 was not running 2 s after it was asked to start, though its reservation \(0\.1 CPU\) "
             r"was in place: it was still starting"),
            (None, r"slow/0 was not running 2 s after it was asked to start: no live node has room for it "
             r"\(0\.1 CPU\), or it was still starting"),
        ]:  # fmt: skip
            strategy = {"scheduling_strategy": PlacementGroupSchedulingStrategy(group)} if where else {}
            actor = SlowToStart.options(**strategy).remote()
            with pytest.raises(RuntimeError, match=says):
                await_running([actor], [None], lambda k: f"slow/{k}", [0], "0.1 CPU", "to start", 2.0, where)
    finally:
        remove_placement_group(group)
