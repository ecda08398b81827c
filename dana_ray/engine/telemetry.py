"""A running trial's live figures: what happened since the last look, handed to a sink about once a second.

The master counts every gradient it applies, per logical worker and per delay (``Master.totals``, kept for
the life of the process and never part of a checkpoint). An executor adds what only it knows, as running
totals too (``MasterLoop.traffic``): the seconds the server spent blocked on gradients (the local executor:
computing them), bytes moved to and from gradient actors, actor restarts; the telemetry itself times the
stepping (``begin_steps``/``end_steps`` around each epoch's steps). ``Telemetry.tick()``, once per applied
gradient, reads the clock; at most once per ``interval_s`` (and always at an epoch's end) it takes the
differences since the previous sample and hands them to the sink as one ``Sample``; ``epoch(row)`` then
hands over the epoch's row.

No Ray here: ``engine/ray/metrics.RayMetrics`` is the sink that exports to Ray's metrics agent (and so to
Prometheus and the dashboard); a test passes a list's ``append``. Without a sink (``Telemetry.off()``) a
tick costs one attribute test.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass
class Sample:
    """What happened in the last ``seconds``."""

    seconds: float
    gradients: dict[int, int] = field(default_factory=dict)  # logical worker -> gradients applied
    delays: dict[int, int] = field(default_factory=dict)  # delay -> gradients applied with it
    busy_s: float = 0.0  # stepping time the server worked rather than waited for a gradient
    stepping_s: float = 0.0  # stepping time in all (busy_s / stepping_s: the busy fraction)
    bytes_to_workers: int = 0  # points (and evaluation parameters) sent to gradient actors
    bytes_from_workers: int = 0  # gradients and BatchNorm statistics received
    actor_restarts: int = 0

    @property
    def applied(self) -> int:
        return sum(self.gradients.values())


class Sink(Protocol):
    def sample(self, sample: Sample) -> None: ...

    def epoch(self, row: dict[str, Any]) -> None: ...


def tally(counts: list[int], index: int) -> None:
    """``counts[index] += 1``, the list grown with zeros as needed (a histogram over 0, 1, 2, ...)."""
    if index >= len(counts):
        counts.extend([0] * (index + 1 - len(counts)))
    counts[index] += 1


class Totals:
    """Running totals since the process began serving the trial (never reset by an epoch, never saved)."""

    def __init__(self, num_workers: int) -> None:
        self.per_worker = [0] * num_workers
        self.delay_counts: list[int] = []

    def record(self, worker: int, delay: int) -> None:
        self.per_worker[worker] += 1
        tally(self.delay_counts, delay)


@dataclass
class Traffic:
    """An executor's running totals (seconds, bytes, restarts) since it began serving the trial."""

    waiting_s: float = 0.0
    bytes_to_workers: int = 0
    bytes_from_workers: int = 0
    bytes_through_server: int = 0  # of those and the rest, what the server process itself read or wrote by
    # value (a sharded server's sequencer: O(1) per update, whatever d)
    actor_restarts: int = 0


class Telemetry:
    """Samples ``totals`` and ``traffic`` (live objects, read at each sample) into ``sink``."""

    def __init__(
        self,
        sink: Sink | None,
        totals: Totals,
        traffic: Traffic,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink, self.totals, self.traffic = sink, totals, traffic
        self.interval_s, self.clock = interval_s, clock
        self._last_time = clock()
        self._next = self._last_time + interval_s
        self._seen_workers = [0] * len(totals.per_worker)
        self._seen_delays: list[int] = []
        self._seen_traffic = Traffic()
        self._stepping_s = 0.0  # stepping time since the previous sample
        self._steps_began: float | None = None

    @classmethod
    def off(cls) -> Telemetry:
        return cls(None, Totals(0), Traffic())

    def begin_steps(self) -> None:
        self._steps_began = self.clock()

    def end_steps(self) -> None:
        if self._steps_began is not None:
            self._stepping_s += self.clock() - self._steps_began
            self._steps_began = None

    def tick(self) -> None:
        if self.sink is not None and self.clock() >= self._next:
            self.flush()

    def flush(self) -> None:
        """Hand the differences since the previous sample to the sink."""
        if self.sink is None:
            return
        now = self.clock()
        if self._steps_began is not None:  # mid-epoch: the stepping so far
            self._stepping_s += now - self._steps_began
            self._steps_began = now
        per_worker, counts = self.totals.per_worker, self.totals.delay_counts
        gradients = {w: n - seen for w, (n, seen) in enumerate(zip(per_worker, self._seen_workers)) if n > seen}
        seen_delays = self._seen_delays + [0] * (len(counts) - len(self._seen_delays))
        delays = {d: n - seen for d, (n, seen) in enumerate(zip(counts, seen_delays)) if n > seen}
        t, seen = self.traffic, self._seen_traffic
        stepping, self._stepping_s = self._stepping_s, 0.0
        sample = Sample(
            seconds=now - self._last_time,
            gradients=gradients,
            delays=delays,
            busy_s=stepping - (t.waiting_s - seen.waiting_s),
            stepping_s=stepping,
            bytes_to_workers=t.bytes_to_workers - seen.bytes_to_workers,
            bytes_from_workers=t.bytes_from_workers - seen.bytes_from_workers,
            actor_restarts=t.actor_restarts - seen.actor_restarts,
        )
        self._seen_workers, self._seen_delays = list(per_worker), list(counts)
        self._seen_traffic = Traffic(**vars(t))
        self._last_time, self._next = now, now + self.interval_s
        self._hand(self.sink.sample, sample)

    def epoch(self, row: dict[str, Any]) -> None:
        """At an epoch's end: the last sample of the epoch, then the epoch's row."""
        if self.sink is not None:
            self.flush()
        if self.sink is not None:
            self._hand(self.sink.epoch, row)

    def _hand(self, method: Callable[[Any], None], value: Any) -> None:
        """A sink that fails is switched off with one logged note: watching never fails a trial."""
        try:
            method(value)
        except Exception as error:
            self.sink = None
            log.warning("live metrics are off for this trial: %s: %s", type(error).__name__, error)
