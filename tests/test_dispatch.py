"""The dispatcher against an in-process fake transport: no Ray. Which slot gets which job and when, a slot
lost mid-call, pulling ahead, and the same numbers as the local executor."""

from __future__ import annotations

import pytest
import torch
from helpers import trial_dict

from dana_ray.config import TrialConfig
from dana_ray.engine.build import build_master, build_replica
from dana_ray.engine.dispatch import Dispatcher, SlotLost, run_steps
from dana_ray.engine.local import LocalExecutor
from dana_ray.engine.loop import MasterLoop

BASE = trial_dict(
    model="cnn",
    model_options={"channels": 4},
    dataset="digits",
    batch_size=32,
    epochs=1,
    lr=0.05,
    lr_decay_epochs=[],
    cpu_threads=1,
    max_steps_per_epoch=24,
    jobs_per_call=1,
)


class FakeTransport:
    """Slots that compute in this process when a result is fetched (a result depends on its job alone).
    ``kill(slot)`` makes the results it holds fail with ``SlotLost`` until ``replace``; ``remote`` slots
    count as living on another node; every call is logged."""

    def __init__(self, worker, num_slots: int, remote: frozenset = frozenset()) -> None:
        self.replica, self.num_slots, self.remote = worker, num_slots, remote
        self.overhead_s, self.compute_s = 0.001, None  # a call's round trip; a gradient's time (None: measured)
        self.jobs, self.slot_of, self.dead = {}, {}, set()
        self.calls: list[tuple[int, list[int]]] = []  # (slot, logical workers) per send
        self.prefetched: list[list[int]] = []
        self.replaced: list[tuple[int, str]] = []

    def send(self, slot, jobs):
        handles = []
        for job in jobs:
            handle = len(self.jobs)
            self.jobs[handle], self.slot_of[handle] = job, slot
            handles.append(handle)
        self.calls.append((slot, [j.worker for j in jobs]))
        return handles

    def fetch(self, handle, slot):
        assert self.slot_of[handle] == slot
        if handle in self.dead:
            raise SlotLost(slot, "the fake slot was killed")
        result = self.replica.compute(self.jobs[handle])
        if self.compute_s is not None:
            result.seconds = self.compute_s
        return result

    def call_overhead_s(self):
        return self.overhead_s

    def first_ready(self, handles):
        return min(handles)  # the oldest call is ready first

    def prefetch(self, handles):
        self.prefetched.append([self.slot_of[h] for h in handles])
        return handles

    def is_remote(self, slot):
        return slot in self.remote

    def replace(self, slot, cause):
        self.replaced.append((slot, cause))

    def kill(self, slot):
        self.dead.update(h for h, s in self.slot_of.items() if s == slot)


class FakeExecutor(MasterLoop):
    """What the ParameterServer is, with the fake transport in place of its actor fleet."""

    def __init__(
        self, cfg: TrialConfig, num_slots: int, remote: frozenset = frozenset(), compute_s: float | None = None
    ) -> None:
        torch.set_num_threads(cfg.compute.cpu_threads)  # as the local executor does: the sums' order depends on it
        self.replica = build_replica(cfg)
        self.steps_per_epoch, self.num_classes = self.replica.steps_per_epoch, self.replica.data.num_classes
        params, bn_stats = self.replica.model.initial_state()
        self.master = build_master(cfg, params, bn_stats, self.replica.model.bn_momentum, self.steps_per_epoch)
        self.watch(None)
        self.transport = FakeTransport(self.replica, num_slots, remote)
        self.transport.compute_s = compute_s
        self.dispatcher = Dispatcher(
            self.transport,
            per_call=cfg.section("ray").jobs_per_call,
            vmap_jobs=cfg.compute.vmap_jobs,
            num_workers=cfg.num_workers,
            sticky=self.master.rule.has_worker_side(),
            traffic=self.traffic,
        )
        for job in self.master.start():
            self.dispatcher.dispatch(job)

    def run_steps(self, steps):
        run_steps(self.master, self.dispatcher, self.telemetry, steps)

    def evaluate(self):
        return self.replica.evaluate(self.master.rule.params, self.master.bn_stats)


def local_sha(config: dict) -> str:
    executor = LocalExecutor(TrialConfig.from_dict(config))
    executor.run_epoch(config["max_steps_per_epoch"])
    sha = executor.params_sha256()
    executor.close()
    return sha


def test_jobs_go_to_the_least_loaded_slot_in_the_order_they_are_issued():
    executor = FakeExecutor(TrialConfig.from_dict(dict(BASE, algorithm="asgd", num_workers=4)), num_slots=2)
    assert executor.transport.calls == [(0, [0]), (1, [1]), (0, [2]), (1, [3])]
    executor.run_steps(2)  # round robin: worker 0's gradient, then worker 1's; each new job to the freed slot
    assert executor.transport.calls[4:] == [(0, [0]), (1, [1])]
    assert executor.dispatcher.load == [2, 2]


def test_a_rule_with_worker_side_state_keeps_each_worker_on_its_slot():
    config = dict(BASE, algorithm="dana-slim", num_workers=4, schedule="gamma")
    executor = FakeExecutor(TrialConfig.from_dict(config), num_slots=3)
    executor.run_epoch(24)
    assert all(slot == worker % 3 for slot, workers in executor.transport.calls for worker in workers)
    assert executor.params_sha256() == local_sha(config)


def test_jobs_wait_for_companions_but_never_the_job_needed_now():
    config = trial_dict(BASE, algorithm="asgd", num_workers=4, jobs_per_call=8)
    executor = FakeExecutor(TrialConfig.from_dict(config), num_slots=2)
    assert executor.transport.calls == [] and len(executor.dispatcher.pending) == 4  # fewer than 8: held
    executor.run_steps(1)  # worker 0's gradient is needed now: all that is pending goes, as one call
    assert executor.transport.calls == [(0, [0, 1, 2, 3])]
    executor.run_steps(4)  # workers 1-3 were in flight; worker 0's new job is needed at step 5: all 4 go,
    assert executor.transport.calls == [(0, [0, 1, 2, 3])] * 2  # to slot 0 again (every slot idle: the lowest)
    assert executor.params_sha256() == local_sha(dict(config, max_steps_per_epoch=5))


@pytest.mark.parametrize("per_call", [1, 3])
def test_a_slot_lost_mid_call_is_replaced_and_its_jobs_sent_again_with_unchanged_numbers(per_call):
    config = trial_dict(BASE, algorithm="dana", num_workers=4, jobs_per_call=per_call)
    executor = FakeExecutor(TrialConfig.from_dict(config), num_slots=2)
    executor.run_steps(5)
    held = sorted(w for w, (_, slot, _) in executor.dispatcher.inflight.items() if slot == 1)
    executor.transport.kill(1)
    sent_before = len(executor.transport.calls)
    executor.run_steps(19)
    assert held and executor.transport.replaced == [(1, "the fake slot was killed")]
    resent = [w for slot, workers in executor.transport.calls[sent_before:] if slot == 1 for w in workers]
    assert sorted(resent[: len(held)]) == held  # the dead slot's jobs, sent again to the slot's new computer
    assert executor.traffic.actor_restarts == 1
    assert executor.params_sha256() == local_sha(config)


def test_results_of_remote_slots_are_pulled_ahead_and_local_ones_are_not():
    executor = FakeExecutor(
        TrialConfig.from_dict(dict(BASE, algorithm="asgd", num_workers=4)), num_slots=2, remote=frozenset({1})
    )
    executor.run_steps(3)
    asked = executor.transport.prefetched
    assert asked and all(slots and set(slots) == {1} for slots in asked)
    assert executor.dispatcher.pulled_ahead > 0


def test_the_arrival_order_applies_the_first_ready_result_and_counts_bytes():
    config = dict(BASE, algorithm="asgd", num_workers=3, schedule="arrival")
    executor = FakeExecutor(TrialConfig.from_dict(config), num_slots=3)
    executor.run_steps(6)  # the fake's oldest call is ready first: workers in issue order, as round robin
    assert executor.params_sha256() == local_sha(dict(config, schedule="round-robin", max_steps_per_epoch=6))
    d = executor.master.rule.params.numel()
    assert executor.traffic.bytes_to_workers == (3 + 6) * 4 * d  # the first 3 jobs, then one per gradient
    assert executor.traffic.bytes_from_workers >= 6 * 4 * d


@pytest.mark.parametrize("compute_s,expected", [(0.0001, 4), (1.0, 1), (0.025, 2), (0.02, 3)])
def test_auto_jobs_per_call_is_sized_from_gradient_time_and_call_overhead(compute_s, expected):
    """A call's overhead (1 ms here) may take at most 2% of its jobs' work: k = ceil(1 ms / (0.02 g)),
    at most N / 2P = 16 / 4 = 4, decided after the first 8 results; the numbers never change."""
    config = trial_dict(BASE, algorithm="dana", num_workers=16, jobs_per_call="auto", max_steps_per_epoch=24)
    executor = FakeExecutor(TrialConfig.from_dict(config), num_slots=2, compute_s=compute_s)
    assert executor.dispatcher.per_call == 1 and executor.dispatcher.auto
    executor.run_epoch(24)
    assert executor.dispatcher.per_call == expected and not executor.dispatcher.auto
    assert executor.params_sha256() == local_sha(config)


def test_jobs_per_call_is_auto_by_default_and_refuses_other_words():
    assert TrialConfig().section("ray").jobs_per_call == "auto"
    with pytest.raises(ValueError, match=r"^ray.jobs_per_call: expected 'auto' or an integer >= 1, got 'many'$"):
        TrialConfig.from_dict(trial_dict(BASE, algorithm="asgd", jobs_per_call="many"))
