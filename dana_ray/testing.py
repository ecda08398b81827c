"""The laws every registered rule keeps, as functions a test suite calls: ours over the whole registry, and a
plug-in author's over their own rule (``from dana_ray.testing import check_laws; check_laws("my-rule")``),
with no per-rule table anywhere. A broken law raises ``LawBroken`` (an ``AssertionError``, so test runners
report it as a failure), naming the rule and the law; the checks are real raises, not ``assert`` statements,
so they hold under ``python -O`` too.

* **single-worker form**: with N = 1 a rule that declares ``single_worker_form`` is that form of
  ``torch.optim.SGD`` ("sgd": no momentum; "momentum": momentum γ; "nesterov": the points it sends are
  ``SGD(momentum=γ, nesterov=True)``'s iterates), in float64, on a noisy quadratic;
* **weight decay at the master**: a rule built with ``weight_decay=λ`` (the trial's ``weight_decay_at:
  master``) takes it: one worker's first gradient moves θ by a further -ηλθ_0 (a rule with a worker side: by
  -sλθ_0 for one step size s > 0 of its own), so a rule that leaves ``self.weight_decay`` out fails;
* **state round trip**: ``state_dict()`` then ``load_state_dict()`` into a fresh rule continues bitwise;
* **per coordinate**: a rule that declares ``per_coordinate`` gives the same numbers split over K shards of θ
  (what ``server_shards`` runs), bitwise;
* **O(d) per update**: the elements an update reads and writes (``apply`` and ``params_for``, counted op by
  op under a ``TorchDispatchMode``, views excluded) do not grow with N: the same with 2 and with 64 workers,
  up to O(N) scalar bookkeeping.

Each function drives the rule as the master does, through the same job protocol (``jobs.py``): worker i's
gradient is computed at the point it was last sent and applied with that point and its delay; a rule with a
worker side has it run first (its local steps included).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from dana_ray.algorithms.base import ALGORITHMS, GradientAt, UpdateRule
from dana_ray.algorithms.jobs import JobProtocol


class LawBroken(AssertionError):
    """A rule does not keep one of its laws; the message names the rule and the law."""


def _require(holds: bool, message: str) -> None:
    if not holds:
        raise LawBroken(message)


class Driver:
    """A rule as the master drives it, through the engine's own job protocol (``jobs.JobProtocol``): points
    sent, versions and delays, a synchronous rule's rounds, and the rule's worker side."""

    def __init__(self, rule: UpdateRule) -> None:
        self.rule = rule
        self.side = type(rule).make_worker_side(rule.momentum, rule.option_values)
        self.sent: list[Tensor] = [rule.params] * rule.num_workers  # the point each worker was sent last
        self.jobs = JobProtocol(rule)
        self.jobs.start(self._point_for)

    def _point_for(self, worker: int) -> Tensor:
        self.sent[worker] = self.rule.params_for(worker)
        return self.sent[worker]

    def push(self, worker: int, gradient: Tensor | GradientAt) -> None:
        """Apply what ``worker`` sends for its outstanding job, and issue the jobs that follows. ``gradient``:
        the gradient at the point it was sent (``self.sent[worker]``), or, for a rule whose jobs take local
        steps, ``gradient(x, h)``: the gradient of the job's h-th batch at x."""
        if worker not in self.jobs.outstanding:
            raise ValueError(f"worker: {worker} has no job outstanding (it already sent this round's result)")
        job = self.jobs.outstanding[worker]
        at = gradient if callable(gradient) else (lambda x, h: gradient)
        sent = self.side.run(worker, job.batch, job.point, job.lr, at) if self.side is not None else at(job.point, 0)
        self.rule.apply(worker, sent, point=job.point, delay=self.jobs.delay(job))
        self.jobs.complete(job, self._point_for)

    def state_dict(self):
        side = self.side.state_dict(self.jobs.next_batches()) if self.side is not None else None
        return (
            self.rule.state_dict(),
            side,
            self.jobs.state_dict(lambda job: job.point.clone()),
            [p.clone() for p in self.sent],
        )

    def load_state_dict(self, state) -> None:
        rule, side, jobs, sent = state
        self.rule.load_state_dict(rule)
        if self.side is not None:
            self.side.load_state_dict(side)
        self.jobs.load_state_dict(jobs, lambda worker, point: point.clone())
        self.sent = [p.clone() for p in sent]


def workers_for(name: str, n: int) -> int:
    """``n``, within what the rule accepts."""
    rule = ALGORITHMS[name]
    n = max(n, rule.min_workers)
    return min(n, rule.max_workers) if rule.max_workers is not None else n


def noisy_quadratic(dim: int = 5, seed: int = 0, dtype: torch.dtype = torch.float64):
    """f(x) = ½ xᵀAx - bᵀx with a fixed noise sequence: the t-th call's gradient is A x - b + ξ_t.
    Returns (grad, loss, optimum)."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    a = q @ q.T / dim + torch.eye(dim, dtype=torch.float64)
    b = torch.randn(dim, generator=gen, dtype=torch.float64)
    noise = torch.randn(10_000, dim, generator=gen, dtype=torch.float64) * 0.1
    calls = iter(range(10_000))

    def grad(x: Tensor) -> Tensor:
        return (a @ x.double() - b + noise[next(calls)]).to(dtype)

    def loss(x: Tensor) -> float:
        x = x.double()
        return float(0.5 * x @ a @ x - b @ x)

    return grad, loss, torch.linalg.solve(a, b).to(dtype)


# -- the laws --------------------------------------------------------------------------------------------------


def single_worker_law(name: str, steps: int = 50) -> bool:
    """With N = 1 the rule is its declared form of torch.optim.SGD (float64, to 1e-12). False when the rule
    declares none (nothing to check)."""
    form = ALGORITHMS[name].single_worker_form
    if form is None:
        return False
    momentum = 0.0 if form == "sgd" else 0.9
    x0 = torch.linspace(-1, 1, 5, dtype=torch.float64)
    grad, _, _ = noisy_quadratic()
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.SGD([x], lr=0.05, momentum=momentum, nesterov=form == "nesterov")
    want = []
    for _ in range(steps):
        opt.zero_grad()
        x.grad = grad(x.detach())
        opt.step()
        want.append(x.detach().clone())
    grad, _, _ = noisy_quadratic()
    rule = ALGORITHMS[name]
    driver = Driver(rule(x0, 1, 0.05, 0.9, **rule.single_worker_options))  # γ = 0.9 whatever its form
    for t in range(steps):
        driver.push(0, grad(driver.sent[0]))
        got = driver.rule.params_for(0) if form == "nesterov" else driver.rule.params
        try:
            torch.testing.assert_close(got, want[t], rtol=1e-12, atol=1e-12)
        except AssertionError as error:
            raise LawBroken(f"{name}: with one worker, step {t} is not SGD's ({form}): {error}") from None
    return True


def weight_decay_law(name: str, weight_decay: float = 0.1, lr: float = 0.05) -> None:
    """Master-side weight decay is the rule's: with one worker (or the fewest it takes, each sending the same
    gradient once), θ after the first gradients with ``weight_decay=λ`` minus θ without is -ηλθ_0, or -sλθ_0
    for one s > 0 where the rule has a worker side (local steps, an outer step size of its own)."""
    rule = ALGORITHMS[name]
    n = workers_for(name, 1)
    x0 = torch.tensor([-1.0, -0.6, -0.2, 0.3, 0.7, 1.1, 1.5], dtype=torch.float64)  # no coordinate 0
    g = torch.linspace(0.5, -0.3, 7, dtype=torch.float64)
    moved, side = [], False
    for decay in (weight_decay, 0.0):
        driver = Driver(rule(x0.clone(), n, lr, 0.9, weight_decay=decay, **rule.single_worker_options))
        side = driver.side is not None
        for worker in range(n):
            driver.push(worker, (lambda x, h: g) if side else g)
        moved.append(driver.rule.params)
    step = (moved[1] - moved[0]) / (weight_decay * x0)  # s in every coordinate
    want = float(step[0]) if side else lr
    _require(
        want > 0 and torch.allclose(step, torch.full_like(step, want), rtol=1e-9, atol=0.0),
        f"{name}: weight_decay={weight_decay} at the master does not move θ by -{want:g}·λθ on the first step "
        f"(moved by -sλθ with s = {[round(float(v), 6) + 0.0 for v in step]}): does its update use self.weight_decay?",
    )


def state_dict_law(name: str, workers: int = 3) -> None:
    """Save mid-run, load into a rule built from other parameters, continue: bitwise the same run."""
    n = workers_for(name, workers)
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(7, generator=gen) for _ in range(20)]
    lr = lambda step: 0.1 * 0.5 ** (step // 6)
    a = Driver(ALGORITHMS[name](torch.ones(7), n, lr, 0.9))
    for k in range(10):
        a.push(k % n, grads[k])
    saved = a.state_dict()
    _require(
        all(isinstance(v, (int, str, Tensor)) for v in saved[0].values()),
        f"{name}: state_dict holds other types than tensors, ints and strings",
    )
    for k in range(10, 20):
        a.push(k % n, grads[k])
    b = Driver(ALGORITHMS[name](torch.zeros(7), n, lr, 0.9))
    b.load_state_dict(saved)
    for k in range(10, 20):
        b.push(k % n, grads[k])
    _require(b.rule.step == a.rule.step == 20, f"{name}: a restored rule counts {b.rule.step} steps, not 20")
    _require(torch.equal(a.rule.params, b.rule.params), f"{name}: a restored rule does not continue bitwise")
    _require(
        all(torch.equal(a.rule.params_for(i), b.rule.params_for(i)) for i in range(n)),
        f"{name}: a restored rule sends other points than the rule it was saved from",
    )


class _Traffic(TorchDispatchMode):
    """Counts the elements every non-view op reads and writes."""

    def __init__(self) -> None:
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not func.is_view:
            tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, Tensor)]
            self.elements += sum(t.numel() for t in tensors)
        return out


def update_traffic(name: str, d: int, workers: int, steps: int = 8) -> float:
    """The elements (in d-vectors) one eager update moves on average, ``apply`` and ``params_for`` together,
    over ``steps`` updates (a synchronous rule: two rounds, its once-a-round step shared by N gradients) of a
    rule with ``workers`` workers in round-robin order, after a first round (one-time allocations such as a
    worker side's first momentum are not the steady state)."""
    n = workers_for(name, workers)
    gen = torch.Generator().manual_seed(0)
    driver = Driver(ALGORITHMS[name](torch.zeros(d), n, 0.01, 0.9))
    steps = n * max(2, -(-steps // n))  # whole rounds (a synchronous rule's step is shared by N gradients)
    grads = [torch.randn(d, generator=gen) * 1e-3 for _ in range(2)]
    for k in range(n):
        driver.push(k, grads[k % 2])
    with _Traffic() as counter:
        for k in range(steps):
            driver.push(k % n, grads[k % 2])
    return counter.elements / steps / d


def linear_cost_law(name: str, d: int = 4096) -> None:
    """An update moves as many elements with 64 workers as with 2 (O(d), not O(N·d)), up to O(N) scalars."""
    few, many = update_traffic(name, d, 2), update_traffic(name, d, 64)
    _require(
        many * d <= few * d + 64 * 16,
        f"{name}: an update moves {many:.1f} d-vectors with 64 workers against {few:.1f} with 2: not O(d)",
    )


def shard_law(name: str, shards: tuple[int, ...] = (2, 3), workers: int = 3, d: int = 37, steps: int = 40) -> bool:
    """A rule that declares ``per_coordinate`` gives, split into K rules over consecutive ranges of θ each fed
    its slice of every gradient (a sharded server, ``engine/shards.py``), bitwise the parameters and points of
    the whole rule, with a learning-rate schedule, delays and gradients that depend on the point. False when
    the rule declares it is not per coordinate (nothing to check)."""
    rule = ALGORITHMS[name]
    if not rule.per_coordinate:
        return False
    n = workers_for(name, workers)
    lr = lambda step: 0.05 * 0.5 ** (step // 15)
    x0 = torch.linspace(-1, 1, d)
    gen = torch.Generator().manual_seed(1)
    curvature, noise = torch.rand(d, generator=gen) + 0.5, torch.randn(steps, d, generator=gen) * 0.1
    order = torch.randint(n, (steps,), generator=gen).tolist()

    def run(bounds: list[int]) -> tuple[Tensor, list[Tensor]]:
        drivers = [Driver(rule(x0[a:b].clone(), n, lr, 0.9)) for a, b in zip(bounds, bounds[1:])]
        schedule = iter(order)
        for t in range(steps):
            worker = drivers[0].jobs.next_worker(schedule)  # the schedule's; a synchronous rule's round order
            point = torch.cat([driver.sent[worker] for driver in drivers])
            grad = curvature * point + noise[t]  # per coordinate, and depends on the point
            for driver, a, b in zip(drivers, bounds, bounds[1:]):
                driver.push(worker, grad[a:b])
        return (
            torch.cat([driver.rule.params for driver in drivers]),
            [torch.cat([driver.rule.params_for(i) for driver in drivers]) for i in range(n)],
        )

    whole, points = run([0, d])
    for k in shards:
        bounds = [d * j // k for j in range(k + 1)]
        split, split_points = run(bounds)
        _require(
            torch.equal(split, whole) and all(map(torch.equal, split_points, points)),
            f"{name}: split over {k} shards, the rule does not give the whole rule's numbers; a rule whose update "
            f"reads across coordinates must declare per_coordinate = False",
        )
    return True


def check_laws(name: str) -> None:
    """Every law, for the rule registered as ``name``; raises ``LawBroken`` at the first that does not hold."""
    single_worker_law(name)
    weight_decay_law(name)
    state_dict_law(name)
    linear_cost_law(name)
    shard_law(name)
