"""The contract every master-side update rule keeps, and the registry that makes a rule usable by name.

A rule owns the master's state for ONE flat parameter vector: the master's parameters ``params`` (θ), its
other state (momenta, running sums) and a step counter. Two calls drive it (cf. optax's init/update pair and
PyTorch's ``Optimizer.state_dict``):

* ``apply(i, g, point=x, delay=τ)``: the master applies the gradient ``g`` that logical worker ``i``
  computed at the point ``x`` it was sent, ``τ`` master updates ago (the master passes both; a rule that
  needs neither ignores them);
* ``params_for(i)``: the point the master sends worker ``i`` now (a fresh tensor, safe to keep; or written
  into a recycled buffer, ``params_for(i, out=buffer)``).

"The master's θ" and "what worker i receives" are different things for the look-ahead rules, and the API
keeps them apart. All state is allocated at construction; ``state_dict()`` returns plain tensors and ints and
``load_state_dict()`` restores them exactly.

Conventions shared by every rule (PyTorch's form of momentum, not Sutskever's):

    v <- γ v + g;   θ <- θ - η_t v;   v starts at zero.

η_t is the learning rate at step t, where t counts gradients applied so far (so a schedule written in
epochs means the same amount of data whatever the number of workers). Weight decay λ is applied in one of
two places (the trial config's ``weight_decay_at``): by the worker, ``g = ∇L(x) + λx`` at the point it was
sent (the rule never sees λ), or by the master, ``g + λθ`` at the master's θ when the gradient is applied
(``weight_decay=λ`` here; the rule's update adds it with ``ops.momentum_``/``ops.descend_``, as
``torch.optim.SGD(weight_decay=λ)`` at the master does).

A new rule is one class: subclass :class:`UpdateRule`, declare what it is (the class attributes below), write
its update once as a module-level function in the ``ops`` vocabulary, and register it::

    @register_rule("my-rule")
    class MyRule(UpdateRule):
        single_worker_form = "sgd"                      # N = 1: plain SGD (a law the tests check)
        def _apply(self, worker, grad, lr, point, delay):
            self._kernel(my_update)(self.params, grad, lr=lr, weight_decay=self.weight_decay)

``fused=True`` compiles the rule's update function into one pass (``ops.Kernel``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, cast

import torch
from torch import Tensor

from dana_ray.algorithms.ops import Kernel
from dana_ray.core.checks import check_bool, check_integer, check_number
from dana_ray.core.registry import Option, Registry, resolve_options
from dana_ray.core.tensors import host_copy

LearningRate = float | Callable[[int], float]
#: ``gradient(x, h)``: the gradient at ``x`` of the job's h-th batch (h < ``local_steps``), with the worker's
#: weight decay; the replica computes it (and keeps the batch's BatchNorm statistics and loss).
GradientAt = Callable[[Tensor, int], Tensor]
#: A worker side's checkpoint: ``{worker: (the job it computes next, {name: tensor})}``.
WorkerSideState = dict[int, tuple[int, dict[str, Tensor]]]


class WorkerSide(Protocol):
    """What a rule runs where gradients are computed, per logical worker: it turns a job (worker i's job b,
    the point x it was sent, η at the time it was sent) into what worker i sends the master, asking the
    replica for gradients. Built by the rule from its own options (``UpdateRule.make_worker_side``).

    * ``local_steps`` = H: the batches one job computes; batch h of job b is batch b·H + h of worker i's
      stream, so a batch's content stays a function of (seed, worker, batch index);
    * idempotent per job: computing worker i's job b again (re-sent after a restore or a lost replica)
      starts from the state before b (``PerWorkerState`` keeps that);
    * ``state_dict(next_job)``: for the workers held here, the state as of just before the job each
      computes next, whether or not that job was computed already; ``load_state_dict`` holds exactly those.
    """

    local_steps: int

    def run(self, worker: int, job: int, point: Tensor, lr: float, gradient: GradientAt) -> Tensor:
        """What worker ``worker`` sends for its job ``job`` at ``point`` (a new tensor; ``point`` unchanged)."""

    def state_dict(self, next_job: dict[int, int]) -> WorkerSideState:
        """The state of the workers in ``next_job`` (worker -> job) held here."""

    def load_state_dict(self, state: WorkerSideState) -> None:
        """Hold exactly the workers in ``state``, each about to compute the job saved with it."""


#: Where each per-worker row of a rule's state starts: a multiple of this many bytes (a cache line; more
#: than the 16 bytes a vectorised load needs).
ROW_ALIGN_BYTES = 64


class PerWorkerState:
    """Each logical worker's tensors, as of before and after its last job: the bookkeeping that makes a
    worker side idempotent per job and its checkpoints consistent with the master's outstanding jobs."""

    def __init__(self) -> None:
        self.after: dict[int, dict[str, Tensor]] = {}  # after the last job computed
        self.before: dict[int, dict[str, Tensor]] = {}  # before it
        self.last_job: dict[int, int] = {}

    def begin(self, worker: int, job: int, fresh: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
        """Worker ``worker``'s state positioned before job ``job`` (``fresh()`` for a worker's first job),
        to be updated in place by the job; a job computed again starts from the state before it."""
        if worker not in self.after:
            self.after[worker] = fresh()
            self.before[worker] = {key: value.clone() for key, value in self.after[worker].items()}
            self.last_job[worker] = job - 1
        after, before, last = self.after[worker], self.before[worker], self.last_job[worker]
        if job == last:  # the same job again: start from the state before it
            _copy_into(after, before)
        elif job == last + 1:
            _copy_into(before, after)
        else:
            raise ValueError(f"job: worker {worker}'s worker-side state is at job {last + 1}; got job {job}")
        self.last_job[worker] = job
        return after

    def state_dict(self, next_job: dict[int, int]) -> WorkerSideState:
        state = {}
        for worker, job in next_job.items():
            if worker not in self.after:
                continue
            last = self.last_job[worker]
            if job not in (last, last + 1):
                raise ValueError(f"next_job: worker {worker}'s worker-side state is at job {last + 1}; asked for {job}")
            tensors = self.before[worker] if job == last else self.after[worker]
            state[worker] = (job, {key: host_copy(value) for key, value in tensors.items()})
        return state

    def load_state_dict(self, state: WorkerSideState) -> None:
        self.after = {w: {k: v.clone() for k, v in tensors.items()} for w, (_, tensors) in state.items()}
        self.before = {w: {k: v.clone() for k, v in tensors.items()} for w, (_, tensors) in state.items()}
        self.last_job = {w: job - 1 for w, (job, _) in state.items()}


def _copy_into(target: dict[str, Tensor], source: dict[str, Tensor]) -> None:
    for key, value in source.items():
        target[key].copy_(value)


#: What a rule reduces to with one worker, for the laws the tests check on every registered rule:
#: "sgd" (plain SGD, θ), "momentum" (momentum SGD, θ), "nesterov" (the points sent are Nesterov iterates).
SINGLE_WORKER_FORMS = ("sgd", "momentum", "nesterov")


class UpdateRule:
    """Base class: validation, the learning-rate schedule, the step counter, (de)serialisation, the kernel.

    Subclasses declare the class attributes, allocate their tensors in ``_allocate`` (listing them in
    ``_tensor_state``) and implement ``_apply(worker, grad, lr, point, delay)`` (and ``_params_for(worker,
    out)`` where they send something other than θ).
    """

    #: The name configs use (set by ``register_rule``).
    name: ClassVar[str] = ""
    #: The row label of this rule in the paper's tables (Tables 3-8), or None: the report puts the paper's
    #: numbers beside ours only for rules that name their row.
    paper_name: ClassVar[str | None] = None
    #: How many workers the rule accepts (a single-worker baseline: max_workers = 1; grids then run it once
    #: per schedule and seed with one worker, and the report measures the other rules against it).
    min_workers: ClassVar[int] = 1
    max_workers: ClassVar[int | None] = None
    #: True for a ``RoundRule`` (one result from every worker before θ moves, as SSGD): the job protocol
    #: (``algorithms/jobs.py``, the one place that reads it) then applies a round's results in worker order
    #: instead of following the arrival schedule.
    synchronous: ClassVar[bool] = False
    #: The rule's own options (``algorithm_options`` in a trial config), with defaults and checks.
    options: ClassVar[dict[str, Option]] = {}
    #: With N = 1: one of SINGLE_WORKER_FORMS (checked by the tests against torch.optim.SGD), or None.
    single_worker_form: ClassVar[str | None] = None
    #: The options under which ``single_worker_form`` holds (the law builds the rule with them), e.g. one
    #: local step and a plain outer step for a local-steps rule; empty: its defaults.
    single_worker_options: ClassVar[dict[str, Any]] = {}
    #: True when the update of each coordinate reads only that coordinate of every d-vector (θ, g, the point,
    #: the momenta) and scalars: the rule can then be split over K server shards (``server_shards``) with the
    #: same numbers, a law the tests check (``laws.shard_law``). A rule that reduces across coordinates (a
    #: norm, a global clip) sets False, and a trial with server_shards > 1 refuses it.
    per_coordinate: ClassVar[bool] = True
    #: d-vectors the update's equations read and write once each per gradient, ``params_for`` included (the
    #: memory-bandwidth reference of ``benchmarks/server_update.py``); None: the benchmark counts them.
    vectors_per_update: ClassVar[int | None] = None
    _tensor_state: ClassVar[tuple[str, ...]] = ("params",)

    def __init__(
        self,
        params: Tensor,
        num_workers: int,
        lr: LearningRate,
        momentum: float = 0.9,
        *,
        weight_decay: float = 0.0,
        fused: bool = False,
        **options: Any,
    ) -> None:
        if not isinstance(params, Tensor) or params.dim() != 1 or not params.is_floating_point():
            raise ValueError(
                f"params: expected a 1-D floating-point tensor, got "
                f"{type(params).__name__}{tuple(params.shape) if isinstance(params, Tensor) else ''}"
            )
        self.check_num_workers(num_workers)
        if not callable(lr):
            check_number("lr", lr, low=0.0)
        check_number("momentum", momentum, low=0.0, below=1.0)
        check_number("weight_decay", weight_decay, low=0.0)
        check_bool("fused", fused)
        #: the rule's own options, checked, with their defaults filled in
        self.option_values: dict[str, Any] = self.resolved_options(options)
        self.params: Tensor = params.detach().clone()
        self.num_workers: int = num_workers
        self.momentum: float = float(momentum)
        self.weight_decay: float = float(weight_decay)  # master-side; 0 when the workers add it
        self.step: int = 0
        #: whether the last ``apply`` changed θ (False: a synchronous round still open, a discarded gradient)
        self.moved: bool = False
        self.fused: bool = fused
        self._lr = lr
        self._kernels: dict[Callable, Kernel] = {}
        self._allocate()

    @classmethod
    def resolved_options(cls, given: dict[str, Any]) -> dict[str, Any]:
        """``given`` (a config's ``algorithm_options``) checked, with the defaults filled in."""
        return resolve_options("algorithm_options", cls.name, given, cls.options)

    @classmethod
    def check_num_workers(cls, num_workers: object) -> None:
        """Refuse a number of workers this rule does not accept, naming the rule and the range."""
        check_integer("num_workers", num_workers, minimum=1)
        num_workers = cast(int, num_workers)  # check_integer refused anything else
        low, high = cls.min_workers, cls.max_workers
        if num_workers < low or (high is not None and num_workers > high):
            allowed = (
                f"exactly {low} worker" + "s" * (low != 1)
                if low == high
                else f"{low} to {high} workers"
                if high is not None
                else f"at least {low} workers"
            )
            raise ValueError(f"num_workers: algorithm {cls.name!r} takes {allowed}, got {num_workers}")

    # -- the two calls -------------------------------------------------------------------------------------

    def apply(self, worker: int, grad: Tensor, *, point: Tensor | None = None, delay: int = 0) -> None:
        """Apply the gradient worker ``worker`` computed at ``point`` (the point it was last sent), ``delay``
        master updates ago. Rules that use the point need it passed (the master always does)."""
        self._check_worker(worker)
        if not isinstance(grad, Tensor) or grad.dim() != 1 or grad.numel() != self.params.numel():
            shape = tuple(grad.shape) if isinstance(grad, Tensor) else type(grad).__name__
            raise ValueError(f"grad: expected a 1-D tensor of {self.params.numel()} elements, got {shape}")
        self.moved = self._apply(worker, grad, self.lr_at(self.step), point, delay) is not False
        self.step += 1

    def workers_to_send(self, worker: int) -> Sequence[int]:
        """After worker ``worker``'s gradient was applied: the workers that get a new point now (each then
        has one job outstanding again). An asynchronous rule: that worker. A synchronous rule (``RoundRule``):
        nobody until the round is complete, then everybody."""
        return (worker,)

    @property
    def local_steps(self) -> int:
        """Batches one job computes (H): 1, unless the rule's worker side takes local steps."""
        return int(self.option_values.get("local_steps", 1))

    @classmethod
    def make_worker_side(cls, momentum: float, options: dict[str, Any]) -> WorkerSide | None:
        """The rule's worker side, built from the trial's momentum and the rule's options as
        ``resolved_options`` gives them (None: the workers send their gradients as they are). Called where
        gradients are computed, once per replica."""
        return None

    def has_worker_side(self) -> bool:
        """Whether workers keep state for this rule (executors then keep logical worker i on one replica)."""
        return type(self).make_worker_side(self.momentum, self.option_values) is not None

    def epoch_metrics(self) -> dict[str, float]:
        """Figures the rule reports in every epoch's row beside the master's (e.g. gradients discarded so
        far); read from the rule's state, so equal on every shard and after a restore."""
        return {}

    def params_for(self, worker: int, out: Tensor | None = None) -> Tensor:
        """The point the master sends worker ``worker`` now: a new tensor, unaffected by later updates; or,
        with ``out`` (a buffer shaped like θ that the caller no longer needs, e.g. an applied job's point),
        written into ``out`` and returned, without allocating."""
        self._check_worker(worker)
        if out is not None and (
            out.shape != self.params.shape or out.dtype != self.params.dtype or out.device != self.params.device
        ):
            raise ValueError(
                f"out: expected a {self.params.dtype} tensor of shape {tuple(self.params.shape)} on "
                f"{self.params.device}, got {out.dtype} {tuple(out.shape)} on {out.device}"
            )
        return self._params_for(worker, out)

    def lr_at(self, step: int) -> float:
        """η at ``step`` (gradients applied so far), from the constant or the schedule."""
        if not callable(self._lr):
            return float(self._lr)
        value = self._lr(step)
        check_number(f"lr({step})", value, low=0.0)
        return float(value)

    # -- for subclasses ------------------------------------------------------------------------------------

    def _allocate(self) -> None:
        """Allocate the rule's state (zeros), listed in ``_tensor_state``."""

    def _apply(self, worker: int, grad: Tensor, lr: float, point: Tensor | None, delay: int) -> bool | None:
        """Apply one gradient; return False when θ did not change (an open round, a discarded gradient)."""
        raise NotImplementedError

    def _params_for(self, worker: int, out: Tensor | None) -> Tensor:
        return self.params.clone() if out is None else out.copy_(self.params)

    def _kernel(self, fn: Callable[..., None]) -> Kernel:
        """``fn`` (the rule's update function) run eagerly, or compiled when ``fused``."""
        kernel = self._kernels.get(fn)
        if kernel is None:
            kernel = self._kernels[fn] = Kernel(fn, self.fused, self.params)
        return kernel

    def _zeros(self, *leading: int) -> Tensor:
        """A zero buffer shaped ``(*leading, d)`` on θ's device and dtype. With leading dimensions (a row per
        worker) each row starts ``ROW_ALIGN_BYTES``-aligned (rows padded, the buffer a view of the first d
        columns): a compiled update takes a row in place only if it is aligned, else it copies it in and out
        each time (ResNet-20's d = 272,474 is not a multiple of 4)."""
        d, dtype, device = self.params.numel(), self.params.dtype, self.params.device
        if not leading:
            return torch.zeros(d, dtype=dtype, device=device)
        per_row = max(1, ROW_ALIGN_BYTES // self.params.element_size())
        return torch.zeros(*leading, -(-d // per_row) * per_row, dtype=dtype, device=device)[..., :d]

    def _scratch(self) -> Tensor | None:
        """A work buffer for the eager update (None when fused: the compiled loop needs no temporaries)."""
        return None if self.fused else self._zeros()

    def _need_point(self, point: Tensor | None) -> Tensor:
        if point is None:
            raise ValueError(
                f"point: {self.name!r} uses the point each gradient was computed at; pass "
                f"apply(worker, grad, point=...)"
            )
        return point.to(self.params)

    # -- checkpoints ---------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Plain tensors (copies) and ints; ``load_state_dict`` restores them exactly."""
        state: dict = {"name": self.name, "num_workers": self.num_workers, "step": self.step}
        for key in self._tensor_state:
            state[key] = host_copy(getattr(self, key))
        return state

    def load_state_dict(self, state: dict) -> None:
        expected = {"name", "num_workers", "step", *self._tensor_state}
        if set(state) != expected:
            raise ValueError(f"state_dict: expected keys {sorted(expected)}, got {sorted(state)}")
        if state["name"] != self.name or state["num_workers"] != self.num_workers:
            raise ValueError(
                f"state_dict: saved by {state['name']!r} with num_workers={state['num_workers']}, "
                f"loading into {self.name!r} with num_workers={self.num_workers}"
            )
        for key in self._tensor_state:
            mine, saved = getattr(self, key), state[key]
            if tuple(saved.shape) != tuple(mine.shape):
                raise ValueError(f"state_dict[{key!r}]: expected shape {tuple(mine.shape)}, got {tuple(saved.shape)}")
        for key in self._tensor_state:
            getattr(self, key).copy_(state[key])
        self.step = int(state["step"])

    # -- checks --------------------------------------------------------------------------------------------

    def _check_worker(self, worker: int) -> None:
        if isinstance(worker, bool) or not isinstance(worker, int) or not 0 <= worker < self.num_workers:
            raise ValueError(f"worker: expected an integer in [0, {self.num_workers - 1}], got {worker!r}")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, d={self.params.numel()}, "
            f"num_workers={self.num_workers}, momentum={self.momentum}, step={self.step})"
        )


class RoundRule(UpdateRule):
    """A synchronous rule: every round, each of the N workers sends one result computed at the same θ; the
    results are summed, and once the round is complete the rule moves θ (``_step_round``) and only then are
    the workers sent new points: optax's ``MultiSteps`` shape, written here once.

    A subclass allocates the sum (a zero d-vector named ``round_sum``, listed with ``contributed`` in its
    ``_tensor_state``; ``_allocate_round`` does both) and writes ``_step_round(lr)``, which reads the sum and
    leaves it zeroed."""

    synchronous = True
    #: the attribute holding the round's sum of results
    round_sum: ClassVar[str] = "round_sum"

    def _allocate_round(self) -> None:
        setattr(self, self.round_sum, self._zeros())
        self.contributed = torch.zeros(self.num_workers, dtype=torch.bool, device=self.params.device)

    def _apply(self, worker: int, grad: Tensor, lr: float, point: Tensor | None, delay: int) -> bool:
        if self.contributed[worker]:
            raise ValueError(
                f"worker: {self.name!r} takes one result per worker per round; worker {worker} already "
                f"sent one this round (still missing: {self.missing_workers()})"
            )
        getattr(self, self.round_sum).add_(grad)
        self.contributed[worker] = True
        if not bool(self.contributed.all()):
            return False
        self._step_round(lr)
        self.contributed.zero_()
        return True

    def _step_round(self, lr: float) -> None:
        raise NotImplementedError

    def missing_workers(self) -> list[int]:
        """Workers whose result the current round still waits for."""
        return [i for i in range(self.num_workers) if not self.contributed[i]]

    def workers_to_send(self, worker: int) -> Sequence[int]:
        return range(self.num_workers) if self.moved else ()


#: Every rule by the exact name configs, the CLI and the sweep use, in registration order.
ALGORITHMS: Registry[type[UpdateRule]] = Registry("algorithm")


def is_single_worker(name: str) -> bool:
    """Whether ``name`` is a registered rule that takes exactly one worker (the baseline): a grid runs it once
    per schedule and seed with N = 1, and the report measures the other rules against it."""
    return name in ALGORITHMS and ALGORITHMS[name].max_workers == 1


def register_rule(name: str) -> Callable[[type[UpdateRule]], type[UpdateRule]]:
    """Class decorator: register an :class:`UpdateRule` subclass under ``name`` (its ``name`` is set)."""

    def register(cls: type[UpdateRule]) -> type[UpdateRule]:
        if not (isinstance(cls, type) and issubclass(cls, UpdateRule)):
            raise ValueError(f"algorithm: register_rule({name!r}) decorates an UpdateRule subclass, got {cls!r}")
        if cls.single_worker_form not in (None, *SINGLE_WORKER_FORMS):
            raise ValueError(
                f"algorithm: {name!r}.single_worker_form must be one of "
                f"{', '.join(SINGLE_WORKER_FORMS)} (what the rule is with one worker, which the laws "
                f"check), or None (leave it out) for a rule that is none of them, got "
                f"{cls.single_worker_form!r}"
            )
        cls.name = name
        return ALGORITHMS.register(name, cls)

    return register
