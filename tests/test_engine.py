"""The engine: flat model views, the master's job protocol, and equivalence with a plain PyTorch loop."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import trial_dict

from dana_ray.config import TrialConfig
from dana_ray.data import WorkerStream, load_dataset
from dana_ray.engine.flat import FlatModel
from dana_ray.engine.local import LocalExecutor
from dana_ray.engine.loop import params_sha256
from dana_ray.models import make_model

SMALL = dict(
    model="cnn", model_options={"channels": 8}, dataset="digits", batch_size=16, epochs=1, lr=0.05, lr_decay_epochs=[]
)


def test_flat_gradient_equals_autograd_on_a_plain_module():
    torch.manual_seed(0)
    module = make_model("cnn", 10, 1, channels=4)
    reference = copy.deepcopy(module)
    flat = FlatModel(module)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    point = flat.params + 0.01 * torch.randn_like(flat.params)
    grad, bn_stats, loss = flat.gradient(point, x, y, weight_decay=0.1)

    torch.nn.utils.vector_to_parameters(point, reference.parameters())
    ref_loss = torch.nn.functional.cross_entropy(reference(x), y)
    ref_loss.backward()
    ref_grad = torch.cat([p.grad.reshape(-1) for p in reference.parameters()]) + 0.1 * point
    torch.testing.assert_close(grad, ref_grad)
    assert loss == pytest.approx(float(ref_loss.detach()))
    # the batch statistics: the first BatchNorm sees the first conv's output
    conv_out = reference.features[0](x)
    mean, var = conv_out.mean((0, 2, 3)), conv_out.var((0, 2, 3), unbiased=True)
    torch.testing.assert_close(bn_stats[:4], mean.detach())
    torch.testing.assert_close(bn_stats[4:8], var.detach())


def test_a_point_is_computed_at_in_place_and_another_dtype_is_copied():
    """The replica reads a received point where it lies (its parameters become views of it: no copy of d
    floats); a point it cannot view (another dtype here, another device on a GPU) is copied into its own
    buffer. Both give the same gradient."""
    torch.manual_seed(0)
    flat = FlatModel(make_model("cnn", 10, 1, channels=4))
    own = flat.params.clone()
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    point = flat.params + 0.01 * torch.randn_like(flat.params)
    in_place = flat.gradient(point, x, y, weight_decay=0.1)
    first = next(flat.module.parameters())
    assert first.data_ptr() == point.data_ptr() and torch.equal(flat.params, own)  # a view; nothing copied
    copied = flat.gradient(point.double(), x, y, weight_decay=0.1)
    assert first.data_ptr() == flat.params.data_ptr() and torch.equal(flat.params, point)
    torch.testing.assert_close(copied[0], in_place[0], rtol=0, atol=0)
    assert copied[2] == in_place[2]
    flat.gradient(point, x, y, weight_decay=0.1)
    point.add_(1.0)  # the caller writes its next point into the same buffer (as the Master does)
    again = flat.gradient(point, x, y, weight_decay=0.1)[0]  # the views already point there: no stale copy
    torch.testing.assert_close(again, flat.gradient(point.clone(), x, y, weight_decay=0.1)[0], rtol=0, atol=0)
    assert not torch.equal(again, in_place[0])


def test_baseline_equals_a_plain_pytorch_training_loop():
    """N = 1: the engine is momentum SGD with weight decay and ordinary BatchNorm running statistics."""
    executor = LocalExecutor(TrialConfig.from_dict(dict(SMALL, algorithm="baseline", weight_decay=5e-4, seed=4)))
    master, steps = executor.master, executor.steps_per_epoch
    executor.run_steps(steps)

    data = load_dataset("digits")
    torch.manual_seed(4)
    module = make_model("cnn", 10, 1, channels=8)
    opt = torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    stream = WorkerStream(data.train, 16, seed=4, worker=0)
    module.train()
    for k in range(steps):
        x, y = stream.batch(k)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(module(x), y).backward()
        opt.step()
    params = torch.nn.utils.parameters_to_vector(module.parameters()).detach()
    stats = torch.cat(
        [
            b.reshape(-1)
            for m in module.modules()
            if isinstance(m, torch.nn.BatchNorm2d)
            for b in (m.running_mean, m.running_var)
        ]
    )
    torch.testing.assert_close(master.rule.params, params, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(master.bn_stats, stats, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [1, 4])
def test_round_robin_delays_and_job_protocol(n):
    executor = LocalExecutor(TrialConfig.from_dict(dict(SMALL, algorithm="dana", num_workers=n)))
    master = executor.master
    assert sorted(master.outstanding) == list(range(n))
    executor.run_steps(n)
    first = master.take_metrics()
    assert first["mean_delay"] == pytest.approx((n - 1) / 2)  # the first round: 0, 1, ..., n-1
    executor.run_steps(5 * n)
    steady = master.take_metrics()
    assert steady["mean_delay"] == steady["max_delay"] == n - 1
    assert master.batches_issued == [7] * n  # the first job, then one per applied gradient
    if n > 1:
        assert steady["mean_gap"] > 0


def test_ssgd_rounds_send_every_worker_the_same_point_with_no_delay():
    executor = LocalExecutor(
        TrialConfig.from_dict(dict(SMALL, algorithm="ssgd", num_workers=3, schedule="block-random"))
    )
    master = executor.master
    for _ in range(4):
        points = [master.outstanding[i].point for i in range(3)]
        assert all(torch.equal(p, points[0]) for p in points)
        assert torch.equal(points[0], master.rule.params)
        executor.run_steps(3)
    metrics = master.take_metrics()
    assert metrics["max_delay"] == 0 and metrics["mean_gap"] == 0


def test_fused_master_measures_the_same_gaps_in_one_pass():
    """With fused updates the master computes each gradient's gap ||x - θ|| with a compiled one-pass
    kernel instead of a scratch vector; the metric is the eager one up to float32 rounding."""
    cfgs = [
        TrialConfig.from_dict(trial_dict(SMALL, algorithm="dana", num_workers=4, fused_updates=fused, cpu_threads=1))
        for fused in (False, True)
    ]
    eager, fused = LocalExecutor(cfgs[0]), LocalExecutor(cfgs[1])
    assert fused.master._scratch is None and eager.master._distance is None
    for executor in (eager, fused):
        executor.run_steps(20)
    gaps = [executor.master.take_metrics()["mean_gap"] for executor in (eager, fused)]
    assert gaps[0] > 0 and gaps[1] == pytest.approx(gaps[0], rel=1e-4)


def test_master_refuses_a_job_that_is_not_outstanding():
    executor = LocalExecutor(TrialConfig.from_dict(dict(SMALL, num_workers=2)))
    master, replica = executor.master, executor.replica
    job = master.next_job()
    result = replica.compute(job)
    master.apply(job, result)
    with pytest.raises(ValueError, match=r"job: worker \d's job \(batch 0\) is not outstanding"):
        master.apply(job, result)


@pytest.mark.parametrize(
    "algorithm,schedule", [("dana", "gamma"), ("ssgd", "round-robin"), ("nag-asgd", "block-random")]
)
def test_master_state_restores_mid_run(algorithm, schedule):
    cfg = TrialConfig.from_dict(dict(SMALL, algorithm=algorithm, num_workers=3, schedule=schedule))
    executor = LocalExecutor(cfg)
    master, steps = executor.master, executor.steps_per_epoch
    executor.run_steps(steps // 2 + 1)  # mid-round for ssgd
    saved = master.state_dict()
    executor.run_steps(steps)
    uninterrupted = params_sha256(master.rule.params)

    executor2 = LocalExecutor(cfg)
    executor2.load_state_dict(saved)
    master2 = executor2.master
    executor2.run_steps(steps)
    assert params_sha256(master2.rule.params) == uninterrupted
    assert torch.equal(master2.bn_stats, master.bn_stats)


@pytest.mark.parametrize("model,options,shape", [("cnn", {"channels": 4}, (1, 8, 8)), ("resnet20", {}, (3, 32, 32))])
def test_batched_gradients_equal_one_by_one(model, options, shape):
    """vmap over points, each with its own batch and its own BatchNorm statistics: in float64 the same
    numbers as one call per point. (In float32 the batched kernels sum in another order; BatchNorm over a
    few examples can amplify that to ~1e-3 relative for an unlucky point, so float32 runs only agree
    closely, as the executor test below checks.)"""
    torch.manual_seed(1)
    flat = FlatModel(make_model(model, 10, shape[0], **options), dtype=torch.float64)
    points = flat.params + 0.01 * torch.randn(3, flat.num_params, dtype=torch.float64)
    x, y = torch.randn(3, 8, *shape, dtype=torch.float64), torch.randint(0, 10, (3, 8))
    grads, stats, losses = flat.gradients(points, x, y, weight_decay=0.01)
    for k in range(3):
        grad, bn_stats, loss = flat.gradient(points[k], x[k], y[k], weight_decay=0.01)
        torch.testing.assert_close(grads[k], grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(stats[k], bn_stats, rtol=1e-10, atol=1e-12)
        assert float(losses[k]) == pytest.approx(loss, rel=1e-12)


@pytest.mark.parametrize("algorithm", ["dana", "ssgd", "dana-slim"])
def test_local_executor_with_vmap_jobs_follows_one_by_one(algorithm):
    cfgs = [
        TrialConfig.from_dict(trial_dict(SMALL, algorithm=algorithm, num_workers=4, vmap_jobs=k, cpu_threads=1))
        for k in (1, 4)
    ]
    one, batched = LocalExecutor(cfgs[0]), LocalExecutor(cfgs[1])
    rows = [ex.run_epoch(ex.steps_per_epoch) for ex in (one, batched)]
    torch.testing.assert_close(batched.master.rule.params, one.master.rule.params, rtol=1e-3, atol=1e-5)
    assert rows[1]["train_loss"] == pytest.approx(rows[0]["train_loss"], rel=1e-4)
    assert rows[1]["step"] == rows[0]["step"] and rows[1]["mean_delay"] == rows[0]["mean_delay"]
    one.close(), batched.close()


class Recorder:
    """A telemetry sink that keeps what it is handed."""

    def __init__(self):
        self.samples, self.rows = [], []

    def sample(self, sample):
        self.samples.append(sample)

    def epoch(self, row):
        self.rows.append(row)


def test_live_telemetry_adds_up_to_the_epoch_rows():
    """The samples a watched executor hands its sink add up, per worker and per delay, to what its epoch rows
    report; the busy time is within the stepping time; the local executor moves no bytes."""
    sink = Recorder()
    cfg = TrialConfig.from_dict(dict(SMALL, algorithm="dana", num_workers=4, epochs=2, max_steps_per_epoch=30))
    from dana_ray.engine.telemetry import Telemetry

    executor = LocalExecutor(cfg, sink)
    # a sample every step: the sums must still be exact
    executor.telemetry = Telemetry(sink, executor.master.totals, executor.traffic, interval_s=0.0)
    rows = [executor.run_epoch(30) for _ in range(2)]
    assert sink.rows == rows and len(sink.samples) >= 60
    assert sum(s.applied for s in sink.samples) == sum(r["gradients"] for r in rows) == 60
    per_worker = {}
    for s in sink.samples:
        for w, n in s.gradients.items():
            per_worker[w] = per_worker.get(w, 0) + n
    assert per_worker == {w: 15 for w in range(4)}  # round robin
    delays = {}
    for s in sink.samples:
        for d, n in s.delays.items():
            delays[d] = delays.get(d, 0) + n
    histogram = [a + b for a, b in zip(*(r["delay_histogram"] + [0] * 8 for r in rows))]
    assert {d: n for d, n in enumerate(histogram) if n} == delays
    assert all(0 <= s.busy_s <= s.stepping_s + 1e-9 for s in sink.samples)
    assert sum(s.stepping_s for s in sink.samples) > 0
    assert all(s.bytes_to_workers == s.bytes_from_workers == s.actor_restarts == 0 for s in sink.samples)


def test_telemetry_samples_at_most_once_per_interval_and_an_unwatched_executor_has_none():
    from dana_ray.engine.telemetry import Telemetry, Totals, Traffic

    now = [0.0]
    sink, totals = Recorder(), Totals(2)
    telemetry = Telemetry(sink, totals, Traffic(), interval_s=1.0, clock=lambda: now[0])
    for k in range(10):  # a gradient every 1/8 s: one sample, at the tick at t = 1.0
        totals.record(k % 2, 1)
        now[0] += 0.125
        telemetry.tick()
    assert len(sink.samples) == 1 and sink.samples[0].gradients == {0: 4, 1: 4}
    assert sink.samples[0].delays == {1: 8} and sink.samples[0].seconds == 1.0
    telemetry.flush()  # an epoch's end: the rest, whatever the interval
    assert sink.samples[1].gradients == {0: 1, 1: 1} and sink.samples[1].seconds == 0.25
    assert LocalExecutor(TrialConfig.from_dict(dict(SMALL, algorithm="asgd", num_workers=2))).telemetry.sink is None


def test_a_failing_sink_turns_telemetry_off_and_never_fails_the_trial(capsys, notes):
    class Broken(Recorder):
        def sample(self, sample):
            raise OSError("the metrics agent is gone")

    cfg = TrialConfig.from_dict(dict(SMALL, algorithm="asgd", num_workers=2, max_steps_per_epoch=5))
    executor = LocalExecutor(cfg, Broken())
    row = executor.run_epoch(5)
    assert row["gradients"] == 5 and executor.telemetry.sink is None
    assert "note: live metrics are off for this trial: OSError: the metrics agent is gone" in capsys.readouterr().err
