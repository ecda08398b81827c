"""Update rules: hand arithmetic, reductions to torch.optim.SGD, a noisy quadratic, state and bad input."""

from __future__ import annotations

import pytest
import torch

from dana_ray.algorithms import ALGORITHMS, make_algorithm
from dana_ray.schedules import make_schedule

def workers_for(name: str, n: int) -> int:
    return 1 if name == "baseline" else n


class Driver:
    """A rule with its worker side, if it has one: what an executor does with worker i's gradient."""

    def __init__(self, rule):
        self.rule = rule
        self.side = rule.worker_side(rule.momentum) if rule.worker_side else None
        self.batches = [0] * rule.num_workers  # batches each worker has computed

    def push(self, worker, grad):
        if self.side is not None:
            grad = self.side.update(worker, self.batches[worker], grad)
        self.batches[worker] += 1
        self.rule.apply(worker, grad)

    def state_dict(self):
        side = self.side.state_dict(dict(enumerate(self.batches))) if self.side else None
        return self.rule.state_dict(), side, list(self.batches)

    def load_state_dict(self, state):
        rule, side, batches = state
        self.rule.load_state_dict(rule)
        if self.side is not None:
            self.side.load_state_dict(side)
        self.batches = list(batches)


def drive(name, params, num_workers, lr, momentum=0.9, fused=False):
    return Driver(make_algorithm(name, params, num_workers, lr=lr, momentum=momentum, fused=fused))


# -- (a) two steps by hand, on 3 elements -------------------------------------------------------------------

# params [1, 2, 3], lr 0.1, momentum 0.5; worker 0 sends [1, 0, -1], then worker 1 sends [2, 2, 2]
# (the baseline has one worker, which sends both).
HAND = {
    # v = [1,0,-1]; θ = [.9,2,3.1]; v = .5v + [2,2,2] = [2.5,2,1.5]; θ = [.65,1.8,2.95]
    "asgd": ([0.65, 1.8, 2.95], [0.65, 1.8, 2.95]),
    "baseline": ([0.65, 1.8, 2.95], [0.65, 1.8, 2.95]),
    # same θ; sent θ - .1*.5*v = θ - .05*[2.5,2,1.5]
    "nag-asgd": ([0.65, 1.8, 2.95], [0.525, 1.7, 2.875]),
    # v0 = [1,0,-1]; θ = [.9,2,3.1]; v1 = [2,2,2]; θ = [.7,1.8,2.9]
    "multi-asgd": ([0.7, 1.8, 2.9], [0.7, 1.8, 2.9]),
    # same θ; sent θ - .05*(v0 + v1) = θ - .05*[3,2,1]
    "dana": ([0.7, 1.8, 2.9], [0.55, 1.7, 2.85]),
    # one round: mean g = [1.5,1,.5]; v = mean; θ = [.85,1.9,2.95]
    "ssgd": ([0.85, 1.9, 2.95], [0.85, 1.9, 2.95]),
    # workers: v0 = [1,0,-1], u0 = g0 + .5v0 = [1.5,0,-1.5]; v1 = [2,2,2], u1 = [3,3,3];
    # master: θ = [1,2,3] - .1u0 - .1u1 = [.55,1.7,2.85] = what dana sends
    "dana-slim": ([0.55, 1.7, 2.85], [0.55, 1.7, 2.85]),
    # λ = .04; step 1: worker 0's point is θ0, no correction: v = [1,0,-1], θ = [.9,2,3.1];
    # step 2: worker 1's point θ0, θ - θ0 = [-.1,0,.1], g⊙g = [4,4,4]: g_dc = g + .16[-.1,0,.1] = [1.984,2,2.016];
    # v = .5v + g_dc = [2.484,2,1.516]; θ = [.6516,1.8,2.9484]
    "dc-asgd": ([0.6516, 1.8, 2.9484], [0.6516, 1.8, 2.9484]),
    # as dana with g_dc: v0 = [1,0,-1], v1 = [1.984,2,2.016]; θ = [.9,2,3.1] - .1v1 = [.7016,1.8,2.8984];
    # sent θ - .05(v0 + v1) = θ - .05[2.984,2,1.016]
    "dana-dc": ([0.7016, 1.8, 2.8984], [0.5524, 1.7, 2.8476]),
}


@pytest.mark.parametrize("fused", [False, True], ids=["eager", "fused"])
@pytest.mark.parametrize("name", ALGORITHMS)
def test_two_steps_by_hand(name, fused):
    n = workers_for(name, 2)
    driver = drive(name, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), n, lr=0.1, momentum=0.5, fused=fused)
    rule, second = driver.rule, 0 if n == 1 else 1
    driver.push(0, torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64))
    driver.push(second, torch.tensor([2.0, 2.0, 2.0], dtype=torch.float64))
    want_params, want_sent = HAND[name]
    torch.testing.assert_close(rule.params, torch.tensor(want_params, dtype=torch.float64))
    torch.testing.assert_close(rule.params_for(0), torch.tensor(want_sent, dtype=torch.float64))
    assert rule.step == 2


def test_hand_table_covers_every_rule():
    assert set(HAND) == set(ALGORITHMS)


# -- (b) N = 1 reductions to torch.optim.SGD, in float64 ---------------------------------------------------

def noisy_quadratic(dim: int = 5, seed: int = 0):
    """f(x) = ½ xᵀAx - bᵀx with a fixed noise sequence: the t-th call's gradient is A x - b + ξ_t."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    a = q @ q.T / dim + torch.eye(dim, dtype=torch.float64)
    b = torch.randn(dim, generator=gen, dtype=torch.float64)
    noise = torch.randn(10_000, dim, generator=gen, dtype=torch.float64) * 0.1
    calls = iter(range(10_000))

    def grad(x):
        return a @ x - b + noise[next(calls)]

    def loss(x):
        return float(0.5 * x @ a @ x - b @ x)

    return grad, loss, torch.linalg.solve(a, b)


def sgd_trajectory(x0, steps, lr, momentum, nesterov):
    """The iterates of torch.optim.SGD on the noisy quadratic (the obviously-correct reference)."""
    grad, _, _ = noisy_quadratic()
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.SGD([x], lr=lr, momentum=momentum, nesterov=nesterov)
    out = []
    for _ in range(steps):
        opt.zero_grad()
        x.grad = grad(x.detach())
        opt.step()
        out.append(x.detach().clone())
    return out


@pytest.mark.parametrize("name,nesterov", [("baseline", False), ("asgd", False), ("multi-asgd", False),
                                           ("ssgd", False), ("dc-asgd", False), ("nag-asgd", True), ("dana", True),
                                           ("dana-slim", True)])
def test_one_worker_equals_torch_sgd(name, nesterov):
    """With N = 1 every rule is momentum SGD. For the look-ahead rules the *sent* point x_t = θ_t - ηγv_t
    follows Nesterov: x_{t+1} = θ_t - ηv_{t+1} - ηγv_{t+1} = x_t + ηγv_t - η(1+γ)(γv_t + g)
    = x_t - η(g + γv_{t+1}), which is PyTorch's nesterov=True update of x with the same v."""
    x0 = torch.linspace(-1, 1, 5, dtype=torch.float64)
    want = sgd_trajectory(x0, 50, lr=0.05, momentum=0.9, nesterov=nesterov)
    grad, _, _ = noisy_quadratic()
    driver = drive(name, x0, 1, lr=0.05, momentum=0.9)
    rule = driver.rule
    for t in range(50):
        driver.push(0, grad(rule.params_for(0)))
        got = rule.params_for(0) if nesterov else rule.params
        torch.testing.assert_close(got, want[t], rtol=1e-12, atol=1e-12)


def test_ssgd_on_n_workers_is_baseline_on_the_concatenated_batch():
    """Least squares: the gradient of the mean loss over 4 equal batches is the mean of their gradients."""
    gen = torch.Generator().manual_seed(1)
    x_data = torch.randn(8 * 4 * 6, 3, generator=gen, dtype=torch.float64)
    y_data = x_data @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.1 * torch.randn(
        len(x_data), generator=gen, dtype=torch.float64)

    def grad(w, rows):
        residual = x_data[rows] @ w - y_data[rows]
        return x_data[rows].T @ residual / len(rows)

    w0 = torch.zeros(3, dtype=torch.float64)
    ssgd = make_algorithm("ssgd", w0, 4, lr=0.1, momentum=0.9)
    base = make_algorithm("baseline", w0, 1, lr=lambda step: 0.1, momentum=0.9)
    for rnd in range(6):
        batch = torch.arange(rnd * 32, (rnd + 1) * 32)
        for i in range(4):
            ssgd.apply(i, grad(ssgd.params_for(i), batch[i * 8:(i + 1) * 8]))
        base.apply(0, grad(base.params_for(0), batch))
        torch.testing.assert_close(ssgd.params, base.params, rtol=1e-12, atol=1e-12)


# -- (c) convergence on a noisy quadratic, with stale gradients ----------------------------------------------

def run_delayed(name, lr, num_workers=4, steps=2000):
    """Round robin, each worker computing at the point it was last sent (a synchronous rule re-sends every
    worker the new θ once a round is complete); returns the final loss relative to the initial one."""
    grad, loss, optimum = noisy_quadratic(dim=10, seed=3)
    x0 = torch.full((10,), 3.0, dtype=torch.float64)
    driver = drive(name, x0, num_workers, lr=lr)
    rule = driver.rule
    sent = {i: rule.params_for(i) for i in range(num_workers)}
    for worker, _ in zip(make_schedule("round-robin", num_workers, seed=0), range(steps)):
        driver.push(worker, grad(sent[worker]))
        if not rule.synchronous:
            sent[worker] = rule.params_for(worker)
        elif rule.step % num_workers == 0:
            sent = {i: rule.params_for(i) for i in range(num_workers)}
    return (loss(rule.params) - loss(optimum)) / (loss(x0) - loss(optimum))


@pytest.mark.parametrize("name,num_workers", [(name, n) for name in ALGORITHMS for n in (1, 4)
                                              if not (name == "baseline" and n > 1)])
def test_converges_on_noisy_quadratic_with_delays(name, num_workers):
    assert run_delayed(name, lr=0.005, num_workers=num_workers) < 0.01


def test_the_papers_claim_in_miniature():
    """At a step size where the stale-momentum rules blow up with 4 workers, DANA still converges."""
    assert run_delayed("dana", lr=0.02) < 1e-3
    for name in ("asgd", "nag-asgd", "multi-asgd"):
        assert run_delayed(name, lr=0.02) > 1.0, name


# -- the running sum keeps DANA's update O(d) without drifting -----------------------------------------------

def test_dana_running_sum_matches_exact_sum():
    gen = torch.Generator().manual_seed(0)
    rule = make_algorithm("dana", torch.zeros(1000), 16, lr=0.01, momentum=0.9)
    for step in range(3000):
        rule.apply(step % 16, torch.randn(1000, generator=gen))
    exact = rule.velocity.double().sum(0)
    assert torch.allclose(rule.velocity_sum.double(), exact, rtol=0, atol=1e-4 * exact.abs().max())


# -- state -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALGORITHMS)
def test_state_dict_restores_exactly(name):
    n = workers_for(name, 3)
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(7, generator=gen) for _ in range(20)]
    schedule = lambda: (k % n for k in range(20))  # noqa: E731
    lr = lambda step: 0.1 * 0.5 ** (step // 6)  # noqa: E731

    driver_a = drive(name, torch.ones(7), n, lr=lr)
    order = list(schedule())
    for k in range(10):
        driver_a.push(order[k], grads[k])
    saved_all = driver_a.state_dict()
    saved = saved_all[0]
    for k in range(10, 20):
        driver_a.push(order[k], grads[k])

    driver_b = drive(name, torch.zeros(7), n, lr=lr)
    driver_b.load_state_dict(saved_all)
    for k in range(10, 20):
        driver_b.push(order[k], grads[k])
    a, b = driver_a.rule, driver_b.rule
    assert b.step == a.step == 20
    assert torch.equal(a.params, b.params)
    assert all(torch.equal(a.params_for(i), b.params_for(i)) for i in range(n))
    assert all(isinstance(v, (int, str, torch.Tensor)) for v in saved.values())


def test_state_dict_is_a_copy():
    rule = make_algorithm("dana", torch.zeros(3), 2, lr=0.1)
    saved = rule.state_dict()
    rule.apply(0, torch.ones(3))
    assert torch.equal(saved["params"], torch.zeros(3))


def test_load_state_dict_refuses_another_rule():
    saved = make_algorithm("asgd", torch.zeros(3), 2, lr=0.1).state_dict()
    with pytest.raises(ValueError, match="saved by 'asgd'"):
        make_algorithm("nag-asgd", torch.zeros(3), 2, lr=0.1).load_state_dict(saved)


def test_params_for_is_a_snapshot():
    rule = make_algorithm("asgd", torch.zeros(3), 2, lr=0.1)
    sent = rule.params_for(1)
    rule.apply(0, torch.ones(3))
    assert torch.equal(sent, torch.zeros(3))


def test_learning_rate_schedule_is_read_per_step():
    seen = []
    rule = make_algorithm("asgd", torch.zeros(1), 1, lr=lambda step: seen.append(step) or 1.0, momentum=0.0)
    rule.apply(0, torch.ones(1))
    rule.apply(0, torch.ones(1))
    assert seen == [0, 1]
    torch.testing.assert_close(rule.params, torch.tensor([-2.0]))


# -- bad input -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(name="adam"), r"algorithm: unknown name 'adam'; allowed: baseline, ssgd, asgd"),
    (dict(num_workers=0), r"num_workers: expected an integer >= 1, got 0"),
    (dict(name="baseline", num_workers=2), r"num_workers: 'baseline' .* needs 1, got 2"),
    (dict(lr=-0.1), r"lr: expected a finite number >= 0.0"),
    (dict(momentum=1.0), r"momentum: expected a finite number in \[0.0, 1.0\), got 1.0"),
    (dict(momentum=-0.1), r"momentum: expected a finite number in \[0.0, 1.0\)"),
])
def test_bad_construction_names_the_value(kwargs, match):
    args = dict(name="dana", params=torch.zeros(3), num_workers=2, lr=0.1, momentum=0.9) | kwargs
    with pytest.raises(ValueError, match=match):
        make_algorithm(**args)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_bad_calls_name_the_value(name):
    n = workers_for(name, 2)
    rule = make_algorithm(name, torch.zeros(3), n, lr=0.1)
    with pytest.raises(ValueError, match=r"grad: expected a 1-D tensor of 3 elements, got \(4,\)"):
        rule.apply(0, torch.zeros(4))
    with pytest.raises(ValueError, match=rf"worker: expected an integer in \[0, {n - 1}\], got {n}"):
        rule.apply(n, torch.zeros(3))
    with pytest.raises(ValueError, match=r"worker: expected an integer in .* got -1"):
        rule.params_for(-1)


def test_negative_scheduled_lr_is_refused():
    rule = make_algorithm("asgd", torch.zeros(3), 2, lr=lambda step: -1.0)
    with pytest.raises(ValueError, match=r"lr\(0\): expected a finite number >= 0.0"):
        rule.apply(0, torch.zeros(3))


def test_ssgd_refuses_a_second_gradient_in_one_round():
    rule = make_algorithm("ssgd", torch.zeros(3), 3, lr=0.1)
    rule.apply(1, torch.ones(3))
    with pytest.raises(ValueError, match=r"worker 1 already sent one this round \(still missing: \[0, 2\]\)"):
        rule.apply(1, torch.ones(3))


# -- the later rules: dana-slim, delay compensation ---------------------------------------------------------

def test_dana_slim_sends_exactly_what_dana_sends():
    """Under a constant η, DANA-Slim's master parameters are DANA's look-ahead θ - ηγΣv_j at every step, so
    the two rules send every worker the same points (float64, 8 workers, a random arrival order)."""
    grad, _, _ = noisy_quadratic(dim=6, seed=5)
    x0 = torch.linspace(-2, 2, 6, dtype=torch.float64)
    dana, slim = drive("dana", x0, 8, lr=0.02), drive("dana-slim", x0, 8, lr=0.02)
    sent = {i: dana.rule.params_for(i) for i in range(8)}
    for worker, _ in zip(make_schedule("gamma", 8, seed=1), range(400)):
        g = grad(sent[worker])
        dana.push(worker, g)
        slim.push(worker, g)
        sent[worker] = dana.rule.params_for(worker)
        torch.testing.assert_close(slim.rule.params_for(worker), sent[worker], rtol=1e-12, atol=1e-12)
    look_ahead = dana.rule.params - 0.02 * 0.9 * dana.rule.velocity.sum(0)
    torch.testing.assert_close(slim.rule.params, look_ahead, rtol=1e-12, atol=1e-12)


def test_delay_compensation_is_zhengs_formula():
    """dc-asgd with momentum 0 is Zheng et al.'s DC-ASGD-c: θ <- θ - η(g + λ g⊙g⊙(θ - x_i))."""
    gen = torch.Generator().manual_seed(2)
    theta = torch.randn(5, generator=gen, dtype=torch.float64)
    rule = make_algorithm("dc-asgd", theta, 2, lr=0.1, momentum=0.0, dc_lambda=0.5)
    x0 = rule.params_for(0)
    rule.apply(1, torch.randn(5, generator=gen, dtype=torch.float64))  # θ moves on
    g, before = torch.randn(5, generator=gen, dtype=torch.float64), rule.params.clone()
    rule.apply(0, g)
    torch.testing.assert_close(rule.params, before - 0.1 * (g + 0.5 * g * g * (before - x0)))


@pytest.mark.parametrize("compensated,plain", [("dc-asgd", "asgd"), ("dana-dc", "dana")])
def test_zero_compensation_is_the_plain_rule(compensated, plain):
    grad, _, _ = noisy_quadratic(dim=4, seed=6)
    ones = torch.ones(4, dtype=torch.float64)
    a = make_algorithm(compensated, ones, 4, lr=0.05, dc_lambda=0.0)
    b = make_algorithm(plain, ones, 4, lr=0.05)
    for worker, _ in zip(make_schedule("block-random", 4, seed=0), range(100)):
        g = grad(b.params_for(worker))
        a.params_for(worker)
        a.apply(worker, g)
        b.apply(worker, g)
    assert torch.equal(a.params, b.params)


def test_worker_momentum_recomputes_a_job_from_the_momentum_before_it():
    from dana_ray.algorithms import WorkerMomentum

    side = WorkerMomentum(0.5)
    first = side.update(3, 0, torch.ones(2))
    second = side.update(3, 1, torch.full((2,), 2.0))
    assert torch.equal(first, torch.full((2,), 1.5)) and torch.equal(second, torch.full((2,), 3.25))  # v = 2.5
    assert torch.equal(side.update(3, 1, torch.full((2,), 2.0)), second)  # batch 1 again: same update
    state = side.state_dict({3: 1})  # about to compute batch 1 (again): the momentum before it
    assert state[3][0] == 1 and torch.equal(state[3][1], torch.ones(2))
    assert torch.equal(side.state_dict({3: 2})[3][1], torch.full((2,), 2.5))
    with pytest.raises(ValueError, match=r"batch: worker 3's momentum is at batch 2; got batch 5"):
        side.update(3, 5, torch.ones(2))


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="dana", dc_lambda=0.1), r"algorithm_options: unknown option 'dc_lambda' for 'dana'; allowed: none"),
    (dict(name="dc-asgd", lam=0.1), r"algorithm_options: unknown option 'lam' for 'dc-asgd'; allowed: dc_lambda"),
    (dict(name="dana-dc", dc_lambda=-1), r"dc_lambda: expected a finite number >= 0.0, got -1"),
])
def test_bad_algorithm_options_name_the_option(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_algorithm(**dict(params=torch.zeros(3), num_workers=2, lr=0.1) | kwargs)


# -- fused=True: each update as one compiled pass ---------------------------------------------------------------

@pytest.mark.parametrize("name", ALGORITHMS)
def test_fused_update_follows_the_eager_rule(name):
    """The compiled one-pass update keeps and sends what the eager rule does, float32 rounding apart (which
    300 steps grow to ~3e-6 here; the exact arithmetic is test_two_steps_by_hand[fused]): 8 workers in
    gamma order (SSGD: rounds), η changing every step, gradients at the points sent."""
    n = workers_for(name, 8)
    grad, _, _ = noisy_quadratic(dim=1000, seed=3)
    x0 = torch.linspace(-2, 2, 1000)
    lr = lambda step: 0.002 * (1 + step % 3)  # noqa: E731
    eager, fused = drive(name, x0, n, lr), drive(name, x0, n, lr, fused=True)
    assert fused.rule.fused and not eager.rule.fused
    sent = {i: eager.rule.params_for(i) for i in range(n)}
    for i in range(n):
        fused.rule.params_for(i)
    order = make_schedule("round-robin" if eager.rule.synchronous else "gamma", n, seed=2)
    for worker, _ in zip(order, range(300)):
        g = grad(sent[worker].double()).float()
        eager.push(worker, g)
        fused.push(worker, g)
        sent[worker] = eager.rule.params_for(worker)
        torch.testing.assert_close(fused.rule.params_for(worker), sent[worker], rtol=1e-4, atol=1e-4)
    assert not torch.equal(eager.rule.params, x0)
    for key, value in eager.rule.state_dict().items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(fused.rule.state_dict()[key], value, rtol=1e-4, atol=1e-4)


def test_fused_update_compiles_once_for_any_learning_rate_and_worker():
    """η travels as a tensor and each worker's momentum is a view: after the first update, new η values and
    new workers reuse the compiled kernel instead of recompiling (which would cost seconds per step)."""
    from torch._dynamo.utils import counters

    rule = make_algorithm("dana", torch.zeros(300), 16, lr=lambda step: 0.1 / (1 + step), fused=True)
    rule.apply(0, torch.ones(300))
    compiled = counters["stats"]["unique_graphs"]
    for step in range(1, 40):
        rule.apply(step % 16, torch.ones(300))
    assert counters["stats"]["unique_graphs"] == compiled


def test_fused_state_dict_loads_into_an_eager_rule():
    """Checkpoints do not depend on fused: a run can resume with or without it."""
    fused = make_algorithm("dana-dc", torch.ones(50), 3, lr=0.1, fused=True)
    for step in range(7):
        fused.apply(step % 3, torch.full((50,), 0.1 * step))
    eager = make_algorithm("dana-dc", torch.zeros(50), 3, lr=0.1)
    eager.load_state_dict(fused.state_dict())
    assert torch.equal(eager.params_for(1), fused.params_for(1)) and eager.step == 7


def test_fused_must_be_a_bool():
    with pytest.raises(ValueError, match=r"fused: expected true or false, got 'yes'"):
        make_algorithm("dana", torch.zeros(3), 2, lr=0.1, fused="yes")
