"""Arrival schedules: the orders they promise, seeding, resumption, bad options."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from dana_ray.schedules import SCHEDULES, make_schedule
from dana_ray.schedules.trace import append_job_times


def take(schedule, n):
    return list(itertools.islice(schedule, n))


def delays(order, num_workers):
    """Delay of each applied gradient when every worker is re-sent θ right after its gradient is applied."""
    sent = {i: 0 for i in range(num_workers)}
    out = []
    for step, worker in enumerate(order):
        out.append(step - sent[worker])
        sent[worker] = step + 1
    return out


def test_round_robin_order_and_delay():
    order = take(make_schedule("round-robin", 4, seed=0), 12)
    assert order == [0, 1, 2, 3] * 3
    assert delays(order, 4)[4:] == [3] * 8


def test_block_random_is_a_permutation_per_block():
    order = take(make_schedule("block-random", 5, seed=7), 500)
    blocks = [order[k : k + 5] for k in range(0, 500, 5)]
    assert all(sorted(b) == list(range(5)) for b in blocks)
    assert len({tuple(b) for b in blocks}) > 20  # really random
    assert max(delays(order, 5)) <= 2 * 5 - 2


def test_gamma_order_follows_simulated_finish_times():
    schedule = make_schedule("gamma", 3, seed=0, shape=4.0, scale=1.0)
    durations = {i: [schedule._duration(i, k) for k in range(40)] for i in range(3)}
    events = sorted((sum(durations[i][: k + 1]), i) for i in range(3) for k in range(40))
    assert take(schedule, 60) == [i for _, i in events[:60]]


def test_gamma_default_spread_is_ten_percent():
    schedule = make_schedule("gamma", 1, seed=0)
    d = np.array([schedule._duration(0, k) for k in range(4000)])
    assert d.mean() == pytest.approx(128, rel=0.01)
    assert d.std() / d.mean() == pytest.approx(0.1, rel=0.1)


def test_gamma_slow_workers_arrive_less_often():
    schedule = make_schedule("gamma", 8, seed=1, slow_fraction=0.25, slow_factor=2.0)
    assert schedule.time_factors == [1.0] * 6 + [2.0] * 2
    counts = Counter(take(schedule, 7000))
    fast, slow = counts[0], counts[7]
    assert fast / slow == pytest.approx(2.0, rel=0.05)
    explicit = make_schedule("gamma", 8, seed=1, time_factors=[1.0] * 6 + [2.0] * 2)
    assert take(explicit, 100) == take(make_schedule("gamma", 8, seed=1, slow_fraction=0.25, slow_factor=2.0), 100)


@pytest.fixture
def options(tmp_path):
    """A schedule's options for these tests: the trace schedule's file (three recorded workers of random
    speeds, 7 jobs each); none for the others."""

    def of(name: str) -> dict:
        if name != "trace":
            return {}
        rng = np.random.default_rng(0)
        rows = [(w, k, 1, float(rng.uniform(0.5, 2.0)), w, "") for w in range(3) for k in range(7)]
        append_job_times(str(tmp_path / "job_times.csv"), rows)
        return {"path": str(tmp_path / "job_times.csv")}

    return of


@pytest.mark.parametrize("name", SCHEDULES)
def test_same_seed_same_sequence_other_seed_other_sequence(name, options):
    """A replayed trace is the same whatever the seed, as round robin is."""
    given = options(name)
    a, b = take(make_schedule(name, 6, seed=3, **given), 200), take(make_schedule(name, 6, seed=3, **given), 200)
    assert a == b
    assert sorted(set(a)) == list(range(6))
    if name not in ("round-robin", "trace"):
        assert take(make_schedule(name, 6, seed=4, **given), 200) != a


@pytest.mark.parametrize("name", SCHEDULES)
def test_state_dict_resumes(name, options):
    given = options(name)
    original = make_schedule(name, 5, seed=11, **given)
    take(original, 37)
    saved = original.state_dict()
    rest = take(original, 100)
    resumed = make_schedule(name, 5, seed=11, **given)
    resumed.load_state_dict(saved)
    assert take(resumed, 100) == rest


def test_state_from_another_schedule_is_refused():
    saved = make_schedule("block-random", 5, seed=1).state_dict()
    with pytest.raises(ValueError, match="schedule state: seed is 1, this schedule has 2"):
        make_schedule("block-random", 5, seed=2).load_state_dict(saved)


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda: make_schedule("fifo", 2, 0),
            r"schedule: unknown name 'fifo'; allowed: round-robin, block-random, gamma, trace",
        ),
        (lambda: make_schedule("round-robin", 0, 0), r"num_workers: expected an integer >= 1, got 0"),
        (lambda: make_schedule("round-robin", 2, -1), r"seed: expected an integer >= 0, got -1"),
        (
            lambda: make_schedule("round-robin", 2, 0, shape=3),
            r"unknown option 'shape' for 'round-robin'; allowed: none",
        ),
        (
            lambda: make_schedule("gamma", 2, 0, shape=0),
            r"schedule_options.shape: expected a finite number > 0.0, got 0",
        ),
        (
            lambda: make_schedule("gamma", 2, 0, shape=-1),
            r"schedule_options.shape: expected a finite number > 0.0, got -1",
        ),
        (
            lambda: make_schedule("gamma", 2, 0, scale="1"),
            r"schedule_options.scale: expected a finite number > 0.0, got '1'",
        ),
        (
            lambda: make_schedule("gamma", 2, 0, time_factors=[1, "x"]),
            r"schedule_options.time_factors\[1\]: expected a finite",
        ),
        (lambda: make_schedule("gamma", 2, 0, time_factors=[1.0]), r"time_factors: expected 2 numbers > 0"),
        (lambda: make_schedule("gamma", 2, 0, slow_fraction=0.5), r"slow_fraction and slow_factor go together"),
        (
            lambda: make_schedule("gamma", 2, 0, slow_fraction=2, slow_factor=2),
            r"slow_fraction: expected a number in \[0, 1\]",
        ),
    ],
)
def test_bad_options_name_the_field(call, match):
    with pytest.raises(ValueError, match=match):
        call()
