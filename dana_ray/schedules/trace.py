"""Job-time traces: what a Ray-executor trial records of its real timing, and what the ``trace`` schedule replays.

The file is CSV, one row per applied job, written by the trial as it runs (``job_times.csv`` in its folder)::

    worker,job,steps,seconds,slot,node
    0,0,1,0.0123,0,3f2a9c1b77e0
    1,0,1,0.0131,1,3f2a9c1b77e0

``worker``: the logical worker; ``job``: its job number (0, 1, 2, ...); ``steps``: batches in the job (H, the
local steps); ``seconds``: how long computing the job took where it was computed (a GPU's queued kernels
included); ``slot``: which of the trial's Worker actors computed it (a replacement takes its predecessor's
slot); ``node``: the first 12 characters of that actor's Ray node id (empty where not known). A job that appears
twice (a trial resumed from a checkpoint computes again what it computed after it) counts once, its last row.

Replayed (``schedule: trace`` with ``schedule_options: {path: ...}``), logical worker i of N takes, for its job
k, ``steps x`` the per-batch time (``seconds / steps``) of the trace's worker i mod M (M: the trace's worker
count) at its job (k + i // M) mod (that worker's job count): each trace worker's jobs in order, cycling when
exhausted, and when N > M the workers that share a trace worker start at different places in it.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable

#: The columns, in order.
COLUMNS = ("worker", "job", "steps", "seconds", "slot", "node")
#: The name a trial gives its trace, in its folder.
TRACE_FILE = "job_times.csv"
#: Characters of a node id written (enough to tell a cluster's nodes apart, as ``ray list nodes`` shows them).
NODE_ID_CHARS = 12

JobTime = tuple[int, int, int, float, int, str]


def append_job_times(path: str, rows: Iterable[JobTime]) -> None:
    """Add ``rows`` (worker, job, steps, seconds, slot, node) to the trace at ``path``, with the header if new."""
    rows = list(rows)
    if not rows:
        return
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(COLUMNS)
        for worker, job, steps, seconds, slot, node in rows:
            writer.writerow((worker, job, steps, f"{seconds:.6g}", slot, node[:NODE_ID_CHARS]))


def read_trace(path: str) -> list[list[float]]:
    """The per-batch times of each recorded worker, in job order: ``times[w][k]`` = seconds / steps of worker w's
    job k. Refuses, in one line naming the field, a missing file, a wrong header, an empty trace, a value that
    is not a number (seconds: finite and > 0), and workers not numbered 0 .. M-1."""
    field = "schedule_options.path"
    if not os.path.isfile(path):
        raise ValueError(f"{field}: no such file {path!r} (a {TRACE_FILE} a Ray-executor trial wrote)")
    jobs: dict[int, dict[int, float]] = {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(header[:4]) != COLUMNS[:4]:
            raise ValueError(f"{field}: {path!r} has the header {header!r}; expected it to start {','.join(COLUMNS)}")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                worker, job, steps, seconds = int(row[0]), int(row[1]), int(row[2]), float(row[3])
            except (ValueError, IndexError):
                raise ValueError(
                    f"{field}: {path!r} line {line}: expected worker,job,steps,seconds, got {row!r}"
                ) from None
            if worker < 0 or job < 0 or steps < 1:
                raise ValueError(
                    f"{field}: {path!r} line {line}: expected worker >= 0, job >= 0 and steps >= 1, got {row[:3]!r}"
                )
            if not math.isfinite(seconds) or seconds <= 0:
                raise ValueError(f"{field}: {path!r} line {line}: seconds must be a finite number > 0, got {row[3]!r}")
            jobs.setdefault(worker, {})[job] = seconds / steps
    if not jobs:
        raise ValueError(f"{field}: {path!r} has no jobs")
    missing = sorted(set(range(max(jobs) + 1)) - set(jobs))
    if missing:
        raise ValueError(
            f"{field}: {path!r}: workers are numbered 0 .. {max(jobs)}, but worker {missing[0]} has no jobs"
        )
    return [[times[k] for k in sorted(times)] for _, times in sorted(jobs.items())]


def worker_durations(times: list[list[float]], num_workers: int) -> list[list[float]]:
    """Logical worker i's per-batch times, job by job: the trace's worker i mod M, started at its job i // M
    (see the module docstring)."""
    out = []
    for i in range(num_workers):
        recorded = times[i % len(times)]
        start = (i // len(times)) % len(recorded)
        out.append(recorded[start:] + recorded[:start])
    return out
