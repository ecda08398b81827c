"""Arrival schedules: which logical worker's gradient the master applies next, and how long each job takes.

A schedule is an infinite iterator of worker indices, seeded and replayable: the same (name, N, seed,
options) always gives the same sequence, and ``state_dict``/``load_state_dict`` resume it mid-way. The
master never takes the order from real timing (that is the Ray executor's separate ``arrival`` mode); it
waits for the worker the schedule names, so a run is reproducible.

Each schedule is also a *time model*: ``batch_time(worker, job)`` is how long logical worker ``worker``
takes to compute one batch of its job number ``job``, in time units; a job of H batches (local steps) takes
H times that. The simulated clock (``schedules/clock.py``) runs every rule on it.

* ``round-robin``: 0, 1, ..., N-1, 0, 1, ... (in steady state every gradient has delay N-1). Workers of
  equal speed: every batch takes 1 time unit.
* ``block-random``: each block of N steps is a fresh seeded permutation of all N workers (the paper's
  "block random" policy: delays vary between 0 and 2N-2, each worker once per block). Equal speed, 1 unit.
* ``gamma``: each worker's time to compute a gradient is drawn from Gamma(shape, scale), optionally times a
  per-worker factor (heterogeneous workers); the earliest finisher is applied next (an event queue), and
  starts its next gradient at once. The defaults, shape 100 and scale 1.28, give a mean of 128 draw units
  with a 10% coefficient of variation (1/sqrt(shape)). In time units a draw is divided by its mean
  (shape x scale): a worker of factor 1 takes 1 unit per batch on average, as under ``round-robin``. A job of
  H local steps takes H times its one draw (the worker's speed is drawn per job).
* ``trace``: a real cluster's timing replayed (``schedules/trace.py``): worker i's batches take the
  durations a recorded run's worker i mod M took, in seconds, in the order it took them; otherwise as
  ``gamma`` (the earliest finisher is applied next).

Randomness is drawn from numpy generators keyed by (seed, stream tag, position), so any position can be
recomputed from small integer state.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import numpy as np

from dana_ray.core.checks import check_integer, fraction, number, numbers, optional, text
from dana_ray.core.registry import Option, Registry, resolve_options
from dana_ray.schedules.trace import read_trace, worker_durations

#: Not a seeded schedule: the real order in which gradients reach a server (the Ray executor's; a config may
#: name it as its ``schedule``, and the master then has no schedule object).
ARRIVAL = "arrival"

_BLOCK_RANDOM_TAG = 1
_GAMMA_TAG = 2


class Schedule(Iterator[int]):
    """Base class: an endless, seeded iterator of worker indices with resumable state."""

    name: ClassVar[str] = ""
    #: The schedule's own options (``schedule_options`` in a trial config), with defaults and checks.
    options: ClassVar[dict[str, Option]] = {}

    def __init__(self, num_workers: int, seed: int) -> None:
        check_integer("num_workers", num_workers, minimum=1)
        check_integer("seed", seed, minimum=0)
        self.num_workers = num_workers
        self.seed = seed
        self.position = 0  # how many indices have been drawn

    def __iter__(self) -> Schedule:
        return self

    def __next__(self) -> int:
        worker = self._draw()
        self.position += 1
        return worker

    def _draw(self) -> int:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"name": self.name, "num_workers": self.num_workers, "seed": self.seed, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()
        for key in ("name", "num_workers", "seed"):
            if state.get(key) != mine[key]:
                raise ValueError(f"schedule state: {key} is {state.get(key)!r}, this schedule has {mine[key]!r}")
        self.position = int(state["position"])

    def batch_time(self, worker: int, job: int) -> float:
        """Time units ``worker`` takes per batch of its job number ``job`` (a pure function: the clock asks for
        any job, whichever rule runs). Workers of equal speed: 1."""
        return 1.0


class RoundRobin(Schedule):
    """0, 1, ..., N-1, 0, 1, ...: a fixed cyclic order."""

    name = "round-robin"

    def _draw(self) -> int:
        return self.position % self.num_workers


class BlockRandom(Schedule):
    """Each block of N consecutive steps is a seeded random permutation of all workers."""

    name = "block-random"

    def __init__(self, num_workers: int, seed: int) -> None:
        super().__init__(num_workers, seed)
        self._block, self._order = -1, np.arange(num_workers)  # cache of the current block's permutation

    def _draw(self) -> int:
        block, offset = divmod(self.position, self.num_workers)
        if block != self._block:
            rng = np.random.default_rng([self.seed, _BLOCK_RANDOM_TAG, block])
            self._block, self._order = block, rng.permutation(self.num_workers)
        return int(self._order[offset])


class EventQueue(Schedule):
    """Base class of the schedules that simulate compute times: worker i's k-th job takes ``_duration(i, k)``
    (in the schedule's own units); the earliest finisher is applied next and starts its next job at once.
    Ties go to the lower index."""

    finish_times: list[float]
    draws: list[int]

    def _time_first_jobs(self) -> None:
        """Every worker's first job (a subclass calls this once its ``_duration`` can answer)."""
        self.finish_times = [self._duration(i, 0) for i in range(self.num_workers)]
        self.draws = [1] * self.num_workers  # jobs timed per worker

    def _duration(self, worker: int, draw: int) -> float:
        raise NotImplementedError

    def _draw(self) -> int:
        now, worker = min((t, i) for i, t in enumerate(self.finish_times))
        self.finish_times[worker] = now + self._duration(worker, self.draws[worker])
        self.draws[worker] += 1
        return worker

    def state_dict(self) -> dict:
        return super().state_dict() | {"finish_times": list(self.finish_times), "draws": list(self.draws)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.finish_times = [float(t) for t in state["finish_times"]]
        self.draws = [int(k) for k in state["draws"]]


class Gamma(EventQueue):
    """Simulated compute times: worker i's k-th gradient takes ``factor_i * Gamma(shape, scale)``.

    Options: ``shape`` (default 100), ``scale`` (default 1.28); heterogeneity either as ``time_factors``
    (one multiplier per worker, 2.0 = twice as slow) or as ``slow_fraction`` and ``slow_factor`` (the last
    round(slow_fraction * N) workers take ``slow_factor`` times as long). Ties go to the lower index.
    In time units (``batch_time``) a draw is divided by the mean, shape x scale.
    """

    name = "gamma"
    options = {
        "shape": Option(100.0, number(0.0, above=True), "gamma shape (10% spread at 100)"),
        "scale": Option(1.28, number(0.0, above=True), "gamma scale (mean time = shape x scale)"),
        "time_factors": Option(None, optional(numbers(0.0, above=True)), "one time multiplier per worker"),
        "slow_fraction": Option(None, optional(fraction()), "share of slow workers"),
        "slow_factor": Option(None, optional(number(0.0, above=True)), "how many times slower they are"),
    }

    def __init__(
        self,
        num_workers: int,
        seed: int,
        shape: float = 100.0,
        scale: float = 1.28,
        time_factors: list[float] | None = None,
        slow_fraction: float | None = None,
        slow_factor: float | None = None,
    ) -> None:
        super().__init__(num_workers, seed)  # each option's own check is its Option's (``make_schedule``)
        self.shape, self.scale = float(shape), float(scale)
        self.time_factors = _time_factors(num_workers, time_factors, slow_fraction, slow_factor)
        self._time_first_jobs()

    def _duration(self, worker: int, draw: int) -> float:
        rng = np.random.default_rng([self.seed, _GAMMA_TAG, worker, draw])
        return self.time_factors[worker] * float(rng.gamma(self.shape, self.scale))

    def batch_time(self, worker: int, job: int) -> float:
        return self._duration(worker, job) / (self.shape * self.scale)


class Trace(EventQueue):
    """A recorded run's compute times replayed (``schedules/trace.py`` reads and maps them): worker i's job k
    takes the trace's k-th duration for it, cycling; times are the trace's seconds."""

    name = "trace"
    options = {"path": Option(None, optional(text()), "a job_times.csv a Ray-executor trial wrote")}

    def __init__(self, num_workers: int, seed: int, path: str | None = None) -> None:
        super().__init__(num_workers, seed)
        if path is None:
            raise ValueError("schedule_options.path: the trace schedule needs a path to a job_times.csv")
        self.path = path
        self.durations = worker_durations(read_trace(path), num_workers)
        self._time_first_jobs()

    def _duration(self, worker: int, draw: int) -> float:
        times = self.durations[worker]
        return times[draw % len(times)]

    def batch_time(self, worker: int, job: int) -> float:
        return self._duration(worker, job)


def _time_factors(
    num_workers: int, time_factors: list[float] | None, slow_fraction: float | None, slow_factor: float | None
) -> list[float]:
    """The options taken together (each one alone is checked by its Option)."""
    if time_factors is not None:
        if slow_fraction is not None or slow_factor is not None:
            raise ValueError("schedule_options: give either time_factors or slow_fraction/slow_factor, not both")
        if len(time_factors) != num_workers:
            raise ValueError(f"schedule_options.time_factors: expected {num_workers} numbers > 0, got {time_factors!r}")
        return [float(f) for f in time_factors]
    if (slow_fraction is None) != (slow_factor is None):
        raise ValueError("schedule_options: slow_fraction and slow_factor go together")
    if slow_fraction is None or slow_factor is None:
        return [1.0] * num_workers
    num_slow = round(slow_fraction * num_workers)
    return [1.0] * (num_workers - num_slow) + [float(slow_factor)] * num_slow


#: Every schedule by the exact name configs use.
SCHEDULES: Registry[type[Schedule]] = Registry("schedule")
for _schedule in (RoundRobin, BlockRandom, Gamma, Trace):
    SCHEDULES.register(_schedule.name, _schedule)


def make_schedule(name: str, num_workers: int, seed: int, **options) -> Schedule:
    """Build the schedule registered as ``name``; ``options`` are its own (``SCHEDULES[name].options``)."""
    cls = SCHEDULES[name]
    given = resolve_options("schedule_options", name, options, cls.options)
    return cls(num_workers, seed, **{k: v for k, v in given.items() if k in options})
