"""Update rules: hand arithmetic, the laws of every registered rule, a noisy quadratic, state and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from dana_ray.algorithms import ALGORITHMS, BUILTIN_ALGORITHMS, make_algorithm
from dana_ray.schedules import make_schedule
from dana_ray.testing import (
    Driver,
    linear_cost_law,
    noisy_quadratic,
    single_worker_law,
    state_dict_law,
    update_traffic,
    weight_decay_law,
    workers_for,
)


def drive(name, params, num_workers, lr, momentum=0.9, fused=False, **kwargs):
    return Driver(make_algorithm(name, params, num_workers, lr=lr, momentum=momentum, fused=fused, **kwargs))


# -- (a) two steps by hand, on 3 elements -------------------------------------------------------------------

# params [1, 2, 3], lr 0.1, momentum 0.5; worker 0 sends [1, 0, -1], then worker 1 sends [2, 2, 2], each
# computed at the point it was sent at the start (θ0; the baseline has one worker, which sends both).
_GA_PENALTY = 1 + 0.1 / (0.1 * (math.sqrt(0.001 / (1 - 0.999**2)) + 1e-8))  # see the gap-aware entry
HAND = {
    # no momentum: θ = [1,2,3] - .1[1,0,-1] - .1[2,2,2]
    "asgd": ([0.7, 1.8, 2.9], [0.7, 1.8, 2.9]),
    # v = [1,0,-1]; θ = [.9,2,3.1]; v = .5v + [2,2,2] = [2.5,2,1.5]; θ = [.65,1.8,2.95]
    "asgd-momentum": ([0.65, 1.8, 2.95], [0.65, 1.8, 2.95]),
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
    # λ = .04, no momentum; step 1: worker 0's point is θ0 = θ, no correction: θ = [.9,2,3.1];
    # step 2: worker 1's point θ0, θ - θ0 = [-.1,0,.1], g⊙g = [4,4,4]: g_dc = g + .16[-.1,0,.1] = [1.984,2,2.016];
    # θ = [.9,2,3.1] - .1 g_dc = [.7016,1.8,2.8984]
    "dc-asgd": ([0.7016, 1.8, 2.8984], [0.7016, 1.8, 2.8984]),
    # λ = 2 (the authors' default): as dana with g_dc = g + 2·4·[-.1,0,.1] = [1.2,2,2.8] at step 2:
    # v0 = [1,0,-1], v1 = [1.2,2,2.8]; θ = [.9,2,3.1] - .1v1 = [.78,1.8,2.82];
    # sent θ - .05(v0 + v1) = θ - .05[2.2,2,1.8]
    "dana-dc": ([0.78, 1.8, 2.82], [0.67, 1.7, 2.73]),
    # step 1: gap 0, penalty 1: v = [1,0,-1], θ = [.9,2,3.1]; step 2: r = .001 v⊙v = [.001,0,.001] (v before the
    # step), k = 2: C = .1(sqrt(r/(1-.999²)) + 1e-8) = .0707 where v ≠ 0; gap |θ - θ0| = [.1,0,.1], so the penalty
    # is p = 1 + .1/C = 2.414 on elements 0 and 2 (1 on element 1); g' = [2/p, 2, 2/p]; v = .5v + g'; θ -= .1v
    "gap-aware": (
        [0.9 - 0.1 * (0.5 + 2 / _GA_PENALTY), 1.8, 3.1 - 0.1 * (-0.5 + 2 / _GA_PENALTY)],
        [0.9 - 0.1 * (0.5 + 2 / _GA_PENALTY), 1.8, 3.1 - 0.1 * (-0.5 + 2 / _GA_PENALTY)],
    ),
    # c = N = 2, and worker 1's delay is 1 < c: the full step, as asgd (a smaller c: below)
    "delay-adaptive": ([0.7, 1.8, 2.9], [0.7, 1.8, 2.9]),
    # R = N = 2 > delay 1: nothing discarded, as asgd (R = 1: below)
    "ringmaster": ([0.7, 1.8, 2.9], [0.7, 1.8, 2.9]),
    # H = 4 inner SGD steps (γ = .5, η = .1) of a constant g from θ0: v = g, 1.5g, 1.75g, 1.875g, so
    # Δ_i = .1·6.125 g_i: Δ0 = [.6125,0,-.6125], Δ1 = [1.225]*3; Δ̄ = [.91875,.6125,.30625]; outer Nesterov
    # (η_out = .7, μ = .9): u = Δ̄, θ = θ0 - .7(Δ̄ + .9u) = θ0 - 1.33Δ̄ = [-.2219375,1.185375,2.5926875]
    "diloco": ([-0.2219375, 1.185375, 2.5926875], [-0.2219375, 1.185375, 2.5926875]),
    # K = N = 2: arrival 1 plain, θ = θ0 - .35Δ0 = [.785625,2,3.214375], Σ = Δ0; arrival 2: Σ = Δ0 + Δ1,
    # u = Σ/2 = Δ̄, θ -= .35Δ1 + .63u: both computed at θ0 (no delay), so exactly diloco's round
    "async-diloco": ([-0.2219375, 1.185375, 2.5926875], [-0.2219375, 1.185375, 2.5926875]),
}


@pytest.mark.parametrize("fused", [False, True], ids=["eager", "fused"])
@pytest.mark.parametrize("name", HAND)
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


def test_hand_table_covers_every_builtin_rule():
    assert set(HAND) == set(BUILTIN_ALGORITHMS)


def test_delay_adaptive_scales_a_stale_step_by_c_over_its_delay():
    """c = .5: worker 1's gradient (delay 1) takes η·.5/1: θ = [.9,2,3.1] - .05[2,2,2]."""
    driver = drive("delay-adaptive", torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), 2, lr=0.1, delay_scale=0.5)
    driver.push(0, torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64))
    driver.push(1, torch.tensor([2.0, 2.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(driver.rule.params, torch.tensor([0.8, 1.9, 3.0], dtype=torch.float64))


def test_ringmaster_discards_a_gradient_r_updates_old_and_counts_it():
    """R = 1: worker 1's gradient (delay 1) is discarded: θ keeps step 1's value, θ's version does not move
    (so worker 0's next gradient has delay 0 and is applied), and the count is reported and saved."""
    driver = drive("ringmaster", torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), 2, lr=0.1, max_delay=1)
    driver.push(0, torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64))
    driver.push(1, torch.tensor([2.0, 2.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(driver.rule.params, torch.tensor([0.9, 2.0, 3.1], dtype=torch.float64))
    assert driver.jobs.version == 1 and driver.rule.step == 2
    assert driver.rule.epoch_metrics() == {"discarded_gradients": 1}
    driver.push(0, torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64))  # delay 0: applied
    torch.testing.assert_close(driver.rule.params, torch.tensor([0.8, 1.9, 3.0], dtype=torch.float64))
    assert driver.rule.state_dict()["discarded"] == 1


# -- (b) the laws of every registered rule: N = 1 reductions, state round trip, O(d) per update ---------------


@pytest.mark.parametrize("name", ALGORITHMS)
def test_one_worker_is_its_declared_form_of_torch_sgd(name):
    """With N = 1 every rule that declares a single-worker form is that form of torch.optim.SGD, in float64.
    For the look-ahead rules the *sent* point x_t = θ_t - ηγv_t follows Nesterov: x_{t+1} = θ_t - ηv_{t+1} -
    ηγv_{t+1} = x_t + ηγv_t - η(1+γ)(γv_t + g) = x_t - η(g + γv_{t+1}), PyTorch's nesterov=True update."""
    checked = single_worker_law(name)
    assert checked or ALGORITHMS[name].single_worker_form is None


def test_every_builtin_rule_but_dana_dc_declares_its_single_worker_form():
    """dana-dc's point with one worker is DANA's look-ahead, not θ, so its compensation never vanishes."""
    assert [n for n in BUILTIN_ALGORITHMS if ALGORITHMS[n].single_worker_form is None] == ["dana-dc"]


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9, 0.99])
def test_asgd_is_sgd_without_momentum_whatever_the_momentum_setting(momentum):
    """The paper's ASGD keeps no momentum: with N = 1 it is torch.optim.SGD(momentum=0) for any ``momentum``
    (float64), and with N = 3 the trajectory does not depend on the setting."""
    x0 = torch.linspace(-1, 1, 5, dtype=torch.float64)
    grad, _, _ = noisy_quadratic()
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.SGD([x], lr=0.05, momentum=0.0)
    driver = drive("asgd", x0, 1, lr=0.05, momentum=momentum)
    for _ in range(30):
        opt.zero_grad()
        x.grad = grad(x.detach())
        opt.step()
    grad, _, _ = noisy_quadratic()
    for _ in range(30):
        driver.push(0, grad(driver.sent[0]))
    torch.testing.assert_close(driver.rule.params, x.detach(), rtol=1e-12, atol=1e-12)
    grads = [torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(k)) for k in range(12)]
    runs = [drive("asgd", x0, 3, lr=0.05, momentum=m) for m in (momentum, 0.0)]
    for k, g in enumerate(grads):
        for run in runs:
            run.push(k % 3, g)
    assert torch.equal(runs[0].rule.params, runs[1].rule.params)
    assert runs[0].rule.state_dict().keys() == {"name", "num_workers", "step", "params"}  # no momentum buffer


@pytest.mark.parametrize("name", ALGORITHMS)
def test_weight_decay_at_the_master_is_taken_by_every_rule(name):
    weight_decay_law(name)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_state_dict_restores_exactly(name):
    state_dict_law(name)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_an_update_is_o_of_d_whatever_n(name):
    linear_cost_law(name)


def test_traffic_counts_what_an_update_moves():
    """The counter behind the O(d) law counts every tensor each op takes or returns (an ``out=`` buffer both
    ways): DANA's eager update (4 ops over 12 vectors) and its look-ahead point come to about 19 d-vectors,
    whatever N; plain ASGD to 5 (θ.add_(g): 3; a fresh copy of θ to send: 2)."""
    assert update_traffic("asgd", 4096, 2) == 5
    assert 15 <= update_traffic("dana", 4096, 2) <= 20
    assert update_traffic("dana", 4096, 64) == pytest.approx(update_traffic("dana", 4096, 2), rel=0.01)


def test_ssgd_on_n_workers_is_baseline_on_the_concatenated_batch():
    """Least squares: the gradient of the mean loss over 4 equal batches is the mean of their gradients."""
    gen = torch.Generator().manual_seed(1)
    x_data = torch.randn(8 * 4 * 6, 3, generator=gen, dtype=torch.float64)
    y_data = x_data @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.1 * torch.randn(
        len(x_data), generator=gen, dtype=torch.float64
    )

    def grad(w, rows):
        residual = x_data[rows] @ w - y_data[rows]
        return x_data[rows].T @ residual / len(rows)

    w0 = torch.zeros(3, dtype=torch.float64)
    ssgd = make_algorithm("ssgd", w0, 4, lr=0.1, momentum=0.9)
    base = make_algorithm("baseline", w0, 1, lr=lambda step: 0.1, momentum=0.9)
    for rnd in range(6):
        batch = torch.arange(rnd * 32, (rnd + 1) * 32)
        for i in range(4):
            ssgd.apply(i, grad(ssgd.params_for(i), batch[i * 8 : (i + 1) * 8]))
        base.apply(0, grad(base.params_for(0), batch))
        torch.testing.assert_close(ssgd.params, base.params, rtol=1e-12, atol=1e-12)


# -- (c) convergence on a noisy quadratic, with stale gradients ----------------------------------------------


def run_delayed(name, lr, num_workers=4, steps=2000):
    """Round robin, each worker computing at the point it was last sent (a synchronous rule re-sends every
    worker the new θ once a round is complete); returns the final loss relative to the initial one. The start
    keeps gradients near 1 per element: delay compensation's λ g⊙g assumes gradients of a network's scale
    (dana-dc's default λ = 2 diverges from a start where they are near 5)."""
    grad, loss, optimum = noisy_quadratic(dim=10, seed=3)
    x0 = torch.full((10,), 1.0, dtype=torch.float64)
    driver = drive(name, x0, num_workers, lr=lr)
    for worker, _ in zip(make_schedule("round-robin", num_workers, seed=0), range(steps)):
        driver.push(worker, lambda x, h: grad(x))  # a local-steps rule: each inner step at its own iterate
    return (loss(driver.rule.params) - loss(optimum)) / (loss(x0) - loss(optimum))


@pytest.mark.parametrize(
    "name,num_workers", sorted({(name, workers_for(name, n)) for name in ALGORITHMS for n in (1, 4)}, key=str)
)
def test_converges_on_noisy_quadratic_with_delays(name, num_workers):
    # A local-steps rule's job is H = 4 inner steps, and its outer Nesterov step (η_out = .7, μ = .9)
    # amplifies a pseudo-gradient about η_out / (1 - μ) = 7 times: its inner η is a tenth (at .002 it diverges).
    lr = 0.0005 if "local_steps" in ALGORITHMS[name].options else 0.005
    assert run_delayed(name, lr=lr, num_workers=num_workers) < 0.01


def test_the_papers_claim_in_miniature():
    """At a step size where the stale-momentum rules blow up with 4 workers, DANA still converges, and so
    does ASGD without momentum (slower: the paper's ASGD is worse from N = 2 on but stable)."""
    assert run_delayed("dana", lr=0.02) < 1e-3
    assert run_delayed("asgd", lr=0.02) < 1e-2
    for name in ("asgd-momentum", "nag-asgd", "multi-asgd"):
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


def test_state_dict_is_a_copy():
    rule = make_algorithm("dana", torch.zeros(3), 2, lr=0.1)
    saved = rule.state_dict()
    rule.apply(0, torch.ones(3))
    assert torch.equal(saved["params"], torch.zeros(3))


def test_load_state_dict_refuses_another_rule():
    saved = make_algorithm("asgd", torch.zeros(3), 2, lr=0.1).state_dict()
    with pytest.raises(ValueError, match="saved by 'asgd'"):
        make_algorithm("dc-asgd", torch.zeros(3), 2, lr=0.1).load_state_dict(saved)


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


# -- master-side weight decay ------------------------------------------------------------------------------


def test_master_side_weight_decay_is_torch_sgd_at_the_master():
    """weight_decay=λ at the master: the gradient computed at the worker's stale point x gets λθ at the
    master's θ added when it is applied, as torch.optim.SGD(weight_decay=λ) stepping the master's θ does.
    Two steps by hand (asgd-momentum, γ = .5, η = .1, λ = .1; both gradients computed at θ0 = [1, 2]):
    step 1: d = [1, 1] + .1·[1, 2] = [1.1, 1.2]; v = d; θ = [.89, 1.88];
    step 2: d = [1, 1] + .1·[.89, 1.88] = [1.089, 1.188]; v = .5·[1.1, 1.2] + d = [1.639, 1.788];
    θ = [.7261, 1.7012]."""
    for fused in (False, True):
        driver = drive(
            "asgd-momentum",
            torch.tensor([1.0, 2.0], dtype=torch.float64),
            2,
            lr=0.1,
            momentum=0.5,
            weight_decay=0.1,
            fused=fused,
        )
        driver.push(0, torch.ones(2, dtype=torch.float64))
        driver.push(1, torch.ones(2, dtype=torch.float64))
        torch.testing.assert_close(driver.rule.params, torch.tensor([0.7261, 1.7012], dtype=torch.float64))
    # and it is torch.optim.SGD at the master for every rule that reduces to it, N = 1
    x0 = torch.linspace(-1, 1, 5, dtype=torch.float64)
    grad, _, _ = noisy_quadratic()
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.SGD([x], lr=0.05, momentum=0.9, weight_decay=0.01)
    for _ in range(30):
        opt.zero_grad()
        x.grad = grad(x.detach())
        opt.step()
    for name in ("baseline", "multi-asgd", "ssgd", "gap-aware"):
        grad, _, _ = noisy_quadratic()
        driver = drive(name, x0, 1, lr=0.05, weight_decay=0.01)
        for _ in range(30):
            driver.push(0, grad(driver.sent[0]))
        torch.testing.assert_close(driver.rule.params, x.detach(), rtol=1e-12, atol=1e-12, msg=name)


def test_master_side_weight_decay_of_plain_sgd_and_dc():
    """θ <- θ - η(g + λθ) for asgd; dc-asgd compensates the loss gradient first, then adds λθ (the authors'
    order: their compensation runs before PyTorch's SGD adds weight decay)."""
    theta, g, x = (torch.tensor(v, dtype=torch.float64) for v in ([1.0, -2.0], [0.5, 0.25], [0.8, -1.5]))
    rule = make_algorithm("asgd", theta, 2, lr=0.1, weight_decay=0.2)
    rule.apply(0, g)
    torch.testing.assert_close(rule.params, theta - 0.1 * (g + 0.2 * theta))
    rule = make_algorithm("dc-asgd", theta, 2, lr=0.1, weight_decay=0.2, dc_lambda=0.5)
    rule.apply(0, g, point=x)
    torch.testing.assert_close(rule.params, theta - 0.1 * (g + 0.5 * g * g * (theta - x) + 0.2 * theta))


# -- bad input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(name="adam"), r"algorithm: unknown name 'adam'; allowed: baseline, ssgd, asgd, asgd-momentum"),
        (dict(num_workers=0), r"num_workers: expected an integer >= 1, got 0"),
        (dict(name="baseline", num_workers=2), r"num_workers: algorithm 'baseline' takes exactly 1 worker, got 2"),
        (dict(lr=-0.1), r"lr: expected a finite number >= 0.0"),
        (dict(momentum=1.0), r"momentum: expected a finite number in \[0.0, 1.0\), got 1.0"),
        (dict(momentum=-0.1), r"momentum: expected a finite number in \[0.0, 1.0\)"),
        (dict(weight_decay=-1.0), r"weight_decay: expected a finite number >= 0.0, got -1.0"),
    ],
)
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


@pytest.mark.parametrize("name", ["dc-asgd", "dana-dc", "gap-aware"])
def test_a_rule_that_uses_the_point_says_so_when_it_is_missing(name):
    rule = make_algorithm(name, torch.zeros(3), 2, lr=0.1)
    with pytest.raises(ValueError, match=rf"point: '{name}' uses the point each gradient was computed at"):
        rule.apply(0, torch.zeros(3))


def test_negative_scheduled_lr_is_refused():
    rule = make_algorithm("asgd", torch.zeros(3), 2, lr=lambda step: -1.0)
    with pytest.raises(ValueError, match=r"lr\(0\): expected a finite number >= 0.0"):
        rule.apply(0, torch.zeros(3))


def test_ssgd_refuses_a_second_gradient_in_one_round():
    rule = make_algorithm("ssgd", torch.zeros(3), 3, lr=0.1)
    rule.apply(1, torch.ones(3))
    with pytest.raises(ValueError, match=r"worker 1 already sent one this round \(still missing: \[0, 2\]\)"):
        rule.apply(1, torch.ones(3))


def test_ssgd_keeps_no_n_by_d_temporaries():
    """Its round bookkeeping is N booleans (it once allocated an N x d float tensor to build them)."""
    rule = make_algorithm("ssgd", torch.zeros(1000), 64, lr=0.1)
    assert rule.contributed.shape == (64,) and rule.contributed.dtype == torch.bool
    assert sum(t.numel() for t in rule.state_dict().values() if isinstance(t, torch.Tensor)) == 3 * 1000 + 64


# -- the later rules: dana-slim, delay compensation, gap-aware ----------------------------------------------


def test_dana_slim_sends_exactly_what_dana_sends():
    """Under a constant η, DANA-Slim's master parameters are DANA's look-ahead θ - ηγΣv_j at every step, so
    the two rules send every worker the same points (float64, 8 workers, a random arrival order)."""
    grad, _, _ = noisy_quadratic(dim=6, seed=5)
    x0 = torch.linspace(-2, 2, 6, dtype=torch.float64)
    dana, slim = drive("dana", x0, 8, lr=0.02), drive("dana-slim", x0, 8, lr=0.02)
    for worker, _ in zip(make_schedule("gamma", 8, seed=1), range(400)):
        g = grad(dana.sent[worker])
        dana.push(worker, g)
        slim.push(worker, g)
        torch.testing.assert_close(slim.sent[worker], dana.sent[worker], rtol=1e-12, atol=1e-12)
    look_ahead = dana.rule.params - 0.02 * 0.9 * dana.rule.velocity.sum(0)
    torch.testing.assert_close(slim.rule.params, look_ahead, rtol=1e-12, atol=1e-12)


def test_delay_compensation_is_zhengs_formula():
    """dc-asgd is Zheng et al.'s DC-ASGD-c: θ <- θ - η(g + λ g⊙g⊙(θ - x_i)), whatever the momentum setting."""
    gen = torch.Generator().manual_seed(2)
    theta = torch.randn(5, generator=gen, dtype=torch.float64)
    rule = make_algorithm("dc-asgd", theta, 2, lr=0.1, momentum=0.9, dc_lambda=0.5)
    x0 = rule.params_for(0)
    rule.apply(1, torch.randn(5, generator=gen, dtype=torch.float64), point=rule.params_for(1))  # θ moves on
    g, before = torch.randn(5, generator=gen, dtype=torch.float64), rule.params.clone()
    rule.apply(0, g, point=x0)
    torch.testing.assert_close(rule.params, before - 0.1 * (g + 0.5 * g * g * (before - x0)))


def test_delay_compensation_keeps_no_copy_of_the_points():
    """The point each gradient was computed at comes from the master (its outstanding job): the rules hold
    what their plain rule holds, N·d less than when they kept a copy of every sent point."""
    for compensated, plain in (("dc-asgd", "asgd"), ("dana-dc", "dana")):
        sizes = [
            sum(
                t.numel()
                for t in make_algorithm(name, torch.zeros(100), 16, lr=0.1).state_dict().values()
                if isinstance(t, torch.Tensor)
            )
            for name in (compensated, plain)
        ]
        assert sizes[0] == sizes[1]


@pytest.mark.parametrize("compensated,plain", [("dc-asgd", "asgd"), ("dana-dc", "dana")])
def test_zero_compensation_is_the_plain_rule(compensated, plain):
    grad, _, _ = noisy_quadratic(dim=4, seed=6)
    ones = torch.ones(4, dtype=torch.float64)
    a, b = drive(compensated, ones, 4, lr=0.05, dc_lambda=0.0), drive(plain, ones, 4, lr=0.05)
    for worker, _ in zip(make_schedule("block-random", 4, seed=0), range(100)):
        g = grad(b.sent[worker])
        a.push(worker, g)
        b.push(worker, g)
    assert torch.equal(a.rule.params, b.rule.params)


def test_gap_aware_penalises_by_the_gap_and_is_asgd_momentum_without_one():
    """Per element, g / (1 + |θ - x|/C): no gap, no penalty (the asgd-momentum step); the larger an element's
    gap, the smaller its step."""
    rule = make_algorithm("gap-aware", torch.zeros(3, dtype=torch.float64), 2, lr=0.1, momentum=0.0)
    plain = make_algorithm("asgd-momentum", torch.zeros(3, dtype=torch.float64), 2, lr=0.1, momentum=0.0)
    g = torch.ones(3, dtype=torch.float64)
    for r in (rule, plain):
        r.apply(0, g, point=r.params_for(0))
    assert torch.equal(rule.params, plain.params)  # the gap is zero: point = θ
    stale = torch.tensor([0.0, -0.1, -1.0], dtype=torch.float64) + rule.params  # 0, small, large gaps
    before = rule.params.clone()
    rule.apply(1, g, point=stale)
    steps = (before - rule.params) / 0.1
    assert steps[0] > steps[1] > steps[2] > 0
    assert float(steps[0]) == pytest.approx(1.0)


def test_gap_aware_options_are_checked():
    with pytest.raises(ValueError, match=r"algorithm_options.beta: expected a finite number in \[0.0, 1.0\), got 1.5"):
        make_algorithm("gap-aware", torch.zeros(3), 2, lr=0.1, beta=1.5)


def test_worker_momentum_recomputes_a_job_from_the_momentum_before_it():
    from dana_ray.algorithms.slim import WorkerMomentum

    side = WorkerMomentum(0.5)
    send = lambda job, grad: side.run(3, job, torch.zeros(2), 0.1, lambda x, h: grad)
    first = send(0, torch.ones(2))
    second = send(1, torch.full((2,), 2.0))
    assert torch.equal(first, torch.full((2,), 1.5)) and torch.equal(second, torch.full((2,), 3.25))  # v = 2.5
    assert torch.equal(send(1, torch.full((2,), 2.0)), second)  # job 1 again: same update
    state = side.state_dict({3: 1})  # about to compute job 1 (again): the momentum before it
    assert state[3][0] == 1 and torch.equal(state[3][1]["velocity"], torch.ones(2))
    assert torch.equal(side.state_dict({3: 2})[3][1]["velocity"], torch.full((2,), 2.5))
    with pytest.raises(ValueError, match=r"job: worker 3's worker-side state is at job 2; got job 5"):
        send(5, torch.ones(2))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(name="dana", dc_lambda=0.1), r"algorithm_options: unknown option 'dc_lambda' for 'dana'; allowed: none"),
        (dict(name="dc-asgd", lam=0.1), r"algorithm_options: unknown option 'lam' for 'dc-asgd'; allowed: dc_lambda"),
        (dict(name="dana-dc", dc_lambda=-1), r"algorithm_options.dc_lambda: expected a finite number >= 0.0, got -1"),
    ],
)
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
    grad, _, _ = noisy_quadratic(dim=1000, seed=3, dtype=torch.float32)
    x0 = torch.linspace(-2, 2, 1000)
    lr = lambda step: 0.002 * (1 + step % 3)
    eager, fused = drive(name, x0, n, lr), drive(name, x0, n, lr, fused=True)
    assert fused.rule.fused and not eager.rule.fused
    order = make_schedule("round-robin" if eager.rule.synchronous else "gamma", n, seed=2)
    for worker, _ in zip(order, range(300)):
        g = grad(eager.sent[worker])
        eager.push(worker, g)
        fused.push(worker, g)
        torch.testing.assert_close(fused.sent[worker], eager.sent[worker], rtol=1e-4, atol=1e-4)
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
        fused.apply(step % 3, torch.full((50,), 0.1 * step), point=fused.params_for(step % 3) * 0.9)
    eager = make_algorithm("dana-dc", torch.zeros(50), 3, lr=0.1)
    eager.load_state_dict(fused.state_dict())
    assert torch.equal(eager.params_for(1), fused.params_for(1)) and eager.step == 7


def test_fused_must_be_a_bool():
    with pytest.raises(ValueError, match=r"fused: expected true or false, got 'yes'"):
        make_algorithm("dana", torch.zeros(3), 2, lr=0.1, fused="yes")


# -- the registry ----------------------------------------------------------------------------------------------


def test_a_name_cannot_be_registered_twice_by_another_rule():
    from dana_ray.algorithms import UpdateRule, register_rule

    with pytest.raises(
        ValueError, match=r"algorithm: 'dana' is already registered \(by dana_ray.algorithms.momentum.DANA\)"
    ):

        @register_rule("dana")
        class Impostor(UpdateRule):
            pass

    assert ALGORITHMS["dana"].__name__ == "DANA"


# -- local steps: the worker side of diloco and async-diloco ----------------------------------------------------


@pytest.mark.parametrize("inner", ["sgd", "adamw"])
def test_local_steps_are_the_torch_optimizer_and_keep_its_state_across_jobs(inner):
    """Two jobs of H = 5 inner steps (worker 2, at η = .05) from where torch.optim's optimizer stands: the
    iterates, and so Δ = x_0 - x_H, are torch.optim.SGD(momentum)/AdamW's, whose state carries over. The first
    job's state is the optimizer's after 5 steps bit for bit (the steps are torch.optim's own functional
    ones); the second job starts from x_0 - Δ, x_5 up to the rounding of Δ, so it is compared to 1e-12."""
    from dana_ray.algorithms.local_steps import LocalSteps

    grad, _, _ = noisy_quadratic()
    x = torch.linspace(-1, 1, 5, dtype=torch.float64).requires_grad_(True)
    opt = (
        torch.optim.SGD([x], lr=0.05, momentum=0.9, foreach=False)
        if inner == "sgd"
        else torch.optim.AdamW([x], lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, foreach=False)
    )
    want, after_five = [], {}
    for step in range(10):
        opt.zero_grad()
        x.grad = grad(x.detach())
        opt.step()
        want.append(x.detach().clone())
        if step == 4:
            after_five = {k: v.clone() for k, v in opt.state[x].items()}
    grad, _, _ = noisy_quadratic()
    side = LocalSteps(5, inner, 0.9, (0.8, 0.99), 1e-6, 0.1)
    point = torch.linspace(-1, 1, 5, dtype=torch.float64)
    for job in range(2):
        delta = side.run(2, job, point, 0.05, lambda at, h: grad(at))
        point = point - delta
        torch.testing.assert_close(point, want[5 * job + 4], rtol=1e-12, atol=1e-12)
        if job == 0:
            mine = side.state.after[2]
            pairs = (
                [("velocity", "momentum_buffer")]
                if inner == "sgd"
                else [("exp_avg", "exp_avg"), ("exp_avg_sq", "exp_avg_sq")]
            )
            assert all(torch.equal(mine[ours], after_five[theirs]) for ours, theirs in pairs)


def test_local_steps_recompute_a_job_from_the_state_before_it():
    from dana_ray.algorithms.local_steps import LocalSteps

    side = LocalSteps(3, "adamw", 0.9)
    gradient = lambda x, h: x + h
    first = side.run(0, 0, torch.ones(4), 0.1, gradient)
    second = side.run(0, 1, torch.ones(4), 0.1, gradient)
    saved = side.state_dict({0: 1})  # about to compute job 1 again
    assert saved[0][0] == 1 and float(saved[0][1]["steps"]) == 3
    assert torch.equal(side.run(0, 1, torch.ones(4), 0.1, gradient), second)
    fresh = LocalSteps(3, "adamw", 0.9)
    fresh.load_state_dict(saved)
    assert torch.equal(fresh.run(0, 1, torch.ones(4), 0.1, gradient), second)
    assert not torch.equal(first, second)  # the moments carried over from job 0


def test_async_diloco_with_one_plain_step_is_asgd():
    """H = 1, inner SGD without momentum, K = 1, μ = 0, η_out = 1: each arrival is θ <- θ - (θ - (θ - ηg)),
    asgd's step up to the rounding of Δ, for 4 workers under a gamma schedule."""
    grad, _, _ = noisy_quadratic(dim=6)
    x0 = torch.linspace(-1, 1, 6, dtype=torch.float64)
    asgd = drive("asgd", x0, 4, lr=0.05, momentum=0.0)
    local = drive(
        "async-diloco", x0, 4, lr=0.05, momentum=0.0, local_steps=1, momentum_every=1, outer_momentum=0.0, outer_lr=1.0
    )
    for worker, _ in zip(make_schedule("gamma", 4, seed=1), range(200)):
        g = grad(asgd.sent[worker])
        asgd.push(worker, g)
        local.push(worker, g)
        torch.testing.assert_close(local.rule.params, asgd.rule.params, rtol=1e-12, atol=1e-12)


def test_the_built_in_rules_are_registered_in_their_documented_order():
    """The registry's order is the CLI's lists and the report's rows and colours: the paper's rules first, in
    its tables' order, then the later ones; it does not depend on how imports are sorted."""
    assert BUILTIN_ALGORITHMS == (
        "baseline",
        "ssgd",
        "asgd",
        "asgd-momentum",
        "nag-asgd",
        "multi-asgd",
        "dana",
        "dana-slim",
        "dc-asgd",
        "dana-dc",
        "gap-aware",
        "delay-adaptive",
        "ringmaster",
        "diloco",
        "async-diloco",
    )


def test_a_broken_law_is_an_error_also_under_python_O():
    """``dana_ray.testing`` raises ``LawBroken`` itself, so ``python -O`` (which strips ``assert``) still fails
    a rule that breaks a law: here a rule that says it is SGD with one worker and takes twice the step."""
    import subprocess
    import sys

    code = (
        "import dana_ray\n"
        "from dana_ray.testing import LawBroken, check_laws\n"
        "@dana_ray.register_rule('twice-sgd')\n"
        "class Twice(dana_ray.UpdateRule):\n"
        "    single_worker_form = 'sgd'\n"
        "    def _apply(self, worker, grad, lr, point, delay):\n"
        "        self.params.sub_(grad, alpha=2 * lr)\n"
        "try:\n"
        "    check_laws('twice-sgd')\n"
        "except LawBroken as broken:\n"
        "    print(broken)\n"
    )
    done = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("twice-sgd: with one worker, step 0 is not SGD's (sgd): ")


def test_a_rule_that_leaves_master_weight_decay_out_breaks_a_law():
    """A plug-in rule written without ``self.weight_decay`` is its single-worker form without decay, so only
    this law sees that ``weight_decay_at: master`` would silently train it without weight decay."""
    import subprocess
    import sys

    code = (
        "import dana_ray\n"
        "from dana_ray.testing import LawBroken, check_laws\n"
        "@dana_ray.register_rule('no-decay')\n"
        "class NoDecay(dana_ray.UpdateRule):\n"
        "    single_worker_form = 'momentum'\n"
        "    _tensor_state = ('params', 'velocity')\n"
        "    def _allocate(self):\n"
        "        self.velocity = self._zeros()\n"
        "    def _apply(self, worker, grad, lr, point, delay):\n"
        "        self.velocity.mul_(self.momentum).add_(grad)\n"
        "        self.params.sub_(self.velocity, alpha=lr)\n"
        "try:\n"
        "    check_laws('no-decay')\n"
        "except LawBroken as broken:\n"
        "    print(broken)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("no-decay: weight_decay=0.1 at the master does not move θ by -0.05·λθ"), done.stdout
    assert done.stdout.rstrip().endswith("does its update use self.weight_decay?")
