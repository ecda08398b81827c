"""The simulated clock (``schedules/clock.py``) against queueing arithmetic, and the trace a Ray trial records
(``schedules/trace.py``): read, refused in one line when bad, mapped onto another worker count, replayed."""

from __future__ import annotations

import math

import pytest

from dana_ray.config import TrialConfig
from dana_ray.schedules import make_schedule
from dana_ray.schedules.clock import SimClock
from dana_ray.schedules.trace import append_job_times, read_trace, worker_durations
from dana_ray.trial import run

TINY = dict(model="cnn", model_options={"channels": 4}, dataset="digits", batch_size=32, lr=0.05, lr_decay_epochs=[])


def constant_trace(path, times: list[float], jobs: int = 3, steps: int = 1) -> str:
    """A trace in which worker i's every job took ``times[i]`` seconds per batch."""
    rows = [(i, k, steps, t * steps, i, "node") for k in range(jobs) for i, t in enumerate(times)]
    append_job_times(str(path), rows)
    return str(path)


def sim_times(config: dict, steps: int, epochs: int = 1) -> list[float]:
    result = run(dict(TINY, epochs=epochs, max_steps_per_epoch=steps, **config))
    return [row["sim_time"] for row in result["history"]]


def test_asynchronous_throughput_is_the_sum_of_the_workers_rates(tmp_path):
    """Workers of 1, 2 and 4 time units per gradient apply 1 + 1/2 + 1/4 = 7/4 gradients per unit: 70 in 40."""
    trace = constant_trace(tmp_path / "t.csv", [1.0, 2.0, 4.0])
    config = dict(algorithm="asgd", num_workers=3, schedule="trace", schedule_options={"path": trace})
    assert sim_times(config, 35, epochs=2) == [20.0, 40.0]


def test_a_synchronous_round_waits_for_its_slowest_worker(tmp_path):
    trace = constant_trace(tmp_path / "t.csv", [1.0, 2.0, 4.0])
    config = dict(algorithm="ssgd", num_workers=3, schedule="trace", schedule_options={"path": trace})
    assert sim_times(config, 15, epochs=2) == [4.0 * 5, 4.0 * 10]  # 5 rounds of 3 results an epoch


@pytest.mark.parametrize("algorithm, expected", [("diloco", [9.0, 18.0]), ("async-diloco", [9.0, 18.0])])
def test_a_job_of_h_local_steps_lasts_h_batches(algorithm, expected):
    """Equal speed (round-robin, 1 unit a batch), H = 3, N = 2: a round (or each worker's job) takes 3 units;
    6 results an epoch are 3 jobs per worker."""
    config = dict(algorithm=algorithm, num_workers=2, algorithm_options={"local_steps": 3})
    assert sim_times(config, 6, epochs=2) == expected


@pytest.mark.parametrize("schedule", ["round-robin", "block-random"])
def test_workers_of_equal_speed_take_one_unit_per_gradient(schedule):
    """N = 4 at 1 unit each: 4 gradients per unit, whatever the order."""
    assert sim_times(dict(algorithm="dana", num_workers=4, schedule=schedule), 40) == [10.0]


def test_gamma_with_a_huge_shape_is_deterministic_arithmetic():
    """shape 1e8: every draw is its mean to 1e-4; time factors 1 and 2 give 1.5 gradients per unit."""
    options = {"shape": 1e8, "scale": 1e-6, "time_factors": [1.0, 2.0]}
    [sim_time] = sim_times(dict(algorithm="asgd", num_workers=2, schedule="gamma", schedule_options=options), 30)
    assert sim_time == pytest.approx(20.0, rel=1e-3)


def test_a_discarded_gradient_still_costs_its_time():
    """Ringmaster drops stale gradients; the clock runs on as for ASGD with the same schedule."""
    config = dict(num_workers=4, schedule="gamma", schedule_options={"slow_fraction": 0.25, "slow_factor": 4})
    ringmaster = run(dict(TINY, epochs=1, max_steps_per_epoch=40, algorithm="ringmaster", **config))
    assert ringmaster["history"][-1].get("discarded_gradients", 0) > 0
    assert ringmaster["sim_time"] == sim_times(dict(algorithm="asgd", **config), 40)[-1]


def test_the_clock_restores_exactly_and_every_row_has_both_times():
    config = dict(TINY, algorithm="dana", num_workers=3, schedule="gamma", epochs=3, max_steps_per_epoch=10)
    states = []
    whole = run(config, checkpoint=states.append)
    resumed = run(config, resume=states[0])
    assert [r["sim_time"] for r in resumed["history"]] == [r["sim_time"] for r in whole["history"]]
    walls = [r["wall_time"] for r in resumed["history"]]
    assert walls[0] == whole["history"][0]["wall_time"] and walls == sorted(walls)  # the first is the saved one
    assert all(r["sim_time"] > 0 for r in whole["history"])


def test_the_clock_is_o1_state_and_changes_no_parameters():
    """The state is one number and an entry per outstanding job; the sha is the same as without the clock
    (round-robin's params_sha256 pinned by ``scripts/params_shas.py`` covers the rest)."""
    clock = SimClock(lambda worker, job: 1.0 + worker)
    for worker in range(3):
        clock.start(worker, 0)
    assert clock.finish(0) == 1.0 and clock.finish(2) == 3.0 and clock.finish(1) == 3.0
    clock.start(1, 1)
    assert clock.state_dict() == {"now": 3.0, "started": {1: [3.0, 5.0]}}


def test_without_a_time_model_a_job_lasts_its_measured_seconds():
    clock = SimClock(None)
    clock.start(0, 0)
    clock.start(1, 0)
    assert clock.finish(1, measured_s=0.5) == 0.5 and clock.finish(0, measured_s=0.25) == 0.5


def test_a_trace_reads_back_per_batch_times_and_its_last_copy_of_a_job(tmp_path):
    path = str(tmp_path / "job_times.csv")
    append_job_times(path, [(0, 0, 2, 0.5, 0, "a" * 40), (1, 0, 2, 1.0, 1, ""), (0, 1, 2, 0.25, 0, "")])
    append_job_times(path, [(0, 1, 2, 0.75, 1, "")])  # job (0, 1) again: a resumed trial computed it again
    assert read_trace(path) == [[0.25, 0.375], [0.5]]
    assert open(path).readline().strip() == "worker,job,steps,seconds,slot,node"
    assert "a" * 12 + "\n" in open(path).read() and "a" * 13 not in open(path).read()


def test_more_workers_than_the_trace_share_its_workers_from_other_starts():
    times = [[1.0, 2.0, 3.0], [10.0]]
    assert worker_durations(times, 5) == [[1.0, 2.0, 3.0], [10.0], [2.0, 3.0, 1.0], [10.0], [3.0, 1.0, 2.0]]
    assert worker_durations(times, 1) == [[1.0, 2.0, 3.0]]


def test_the_trace_schedule_applies_the_earliest_finisher_and_cycles(tmp_path):
    path = str(tmp_path / "t.csv")
    append_job_times(path, [(0, 0, 1, 3.0, 0, ""), (0, 1, 1, 1.0, 0, ""), (1, 0, 1, 2.0, 1, "")])
    schedule = make_schedule("trace", 2, 0, path=path)
    # finishes: w0 at 3, 4, 7, 8; w1 at 2, 4, 6, 8 (ties to the lower index)
    assert [next(schedule) for _ in range(6)] == [1, 0, 0, 1, 1, 0]
    assert [schedule.batch_time(0, k) for k in range(3)] == [3.0, 1.0, 3.0]


@pytest.mark.parametrize(
    "content, says",
    [
        (None, "no such file"),
        ("", "has the header None"),
        ("worker,job,seconds\n0,0,1\n", "expected it to start worker,job,steps,seconds"),
        ("worker,job,steps,seconds,slot,node\n", "has no jobs"),
        ("worker,job,steps,seconds,slot,node\n0,0,1,-1,0,\n", "seconds must be a finite number > 0, got '-1'"),
        ("worker,job,steps,seconds,slot,node\n0,0,1,nan,0,\n", "seconds must be a finite number > 0, got 'nan'"),
        ("worker,job,steps,seconds,slot,node\n0,0,1,inf,0,\n", "seconds must be a finite number > 0, got 'inf'"),
        ("worker,job,steps,seconds,slot,node\n0,x,1,1,0,\n", "line 2: expected worker,job,steps,seconds"),
        ("worker,job,steps,seconds,slot,node\n0,0,0,1,0,\n", "steps >= 1"),
        ("worker,job,steps,seconds,slot,node\n1,0,1,1,0,\n", "worker 0 has no jobs"),
    ],
)
def test_a_bad_trace_is_refused_in_one_line_naming_the_option(tmp_path, content, says):
    path = tmp_path / "job_times.csv"
    if content is not None:
        path.write_text(content)
    config = dict(TINY, algorithm="asgd", num_workers=2, schedule="trace", schedule_options={"path": str(path)})
    with pytest.raises(ValueError) as refused:
        TrialConfig.from_dict(config)
    message = str(refused.value)
    assert message.startswith("schedule_options.path: ") and says in message and "\n" not in message


def test_a_trace_schedule_needs_a_path():
    with pytest.raises(ValueError, match=r"^schedule_options.path: the trace schedule needs a path"):
        TrialConfig.from_dict(dict(TINY, algorithm="asgd", num_workers=2, schedule="trace"))


def test_a_replayed_trace_is_deterministic(tmp_path):
    trace = constant_trace(tmp_path / "t.csv", [1.0, 3.0, 2.0, 5.0], jobs=5)
    config = dict(TINY, algorithm="dana", num_workers=4, schedule="trace", schedule_options={"path": trace})
    config.update(epochs=1, max_steps_per_epoch=30)
    first, second = run(config), run(config)
    assert first["params_sha256"] == second["params_sha256"] and first["sim_time"] == second["sim_time"]
    assert math.isfinite(first["test_error"])
