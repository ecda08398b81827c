"""Tune's and Ray's messages on the sweep's console: what the sweep tells better is dropped, a failed trial's
cause is kept for the sweep's own line, and Ray's error messages stay off standard output.

The sweep tells a stop, a restore and a failure itself, in a line each (``console``, ``cli``); without
``--verbose`` Tune's own account of them is dropped: the "Stop signal received" warning, the state it wrote,
the "Failed to fetch metrics" list of every trial that never started, the state file a resume restored
from, the list of trials that did not complete, and a failed trial's traceback ("Trial task failed"),
whose one-line cause the console prints instead (``failure_cause``; the whole traceback is in the trial's
``error.txt``, when the disk lets Tune write it). The restore hint Tune writes for its own API
(``Tuner.restore(...)``) is always dropped: the sweep prints the ``--resume`` line that works here.

Ray prints the error messages its GCS publishes to a driver ("A worker died or was killed ...") on
standard output, where the sweep's report goes; ``ray_errors_to_stderr`` sends them to standard error.
"""

from __future__ import annotations

import logging
from typing import Any

from dana_ray.core.cli import one_line

#: Tune's log records the sweep replaces with its own lines, by logger: the start of their messages.
ALWAYS_DROPPED = {"ray.tune.tune": ("Resume experiment with: Tuner.restore(", "Experiment has been interrupted")}
QUIET_DROPPED = {
    "ray.tune.tune": (
        "Stop signal received",
        "Wrote the latest version of all result files",
        "Trials did not complete",
    ),
    "ray.tune.analysis.experiment_analysis": ("Failed to fetch metrics",),
    "ray.tune.execution.tune_controller": ("Restoring the run from the latest experiment state file",),
}
#: The logger and message with which Tune reports a failed trial, the exception attached.
FAILURE = ("ray.tune.execution.tune_controller", "Trial task failed for trial ")

_causes: dict[str, str] = {}


def failure_cause(trial: Any) -> str | None:
    """The one-line cause of the trial's latest failure in this process (by its name), if Tune logged one."""
    return _causes.get(str(trial))


class _Dropped(logging.Filter):
    def __init__(self, starts: tuple[str, ...], failures_too: bool) -> None:
        super().__init__()
        self.starts, self.failures_too = starts, failures_too

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.name == FAILURE[0] and message.startswith(FAILURE[1]):
            error = record.exc_info[1] if record.exc_info else None
            _causes[message[len(FAILURE[1]) :]] = one_line(error) if error is not None else "unknown cause"
            return not self.failures_too
        return not any(message.startswith(start) or f"\n{start}" in message for start in self.starts)


def quiet_tune(verbose: bool) -> None:
    """Drop Tune's log records the sweep tells better (with ``verbose``: only the restore hint), keeping the
    causes of failed trials (``failure_cause``)."""
    dropped: dict[str, list[str]] = {name: list(starts) for name, starts in ALWAYS_DROPPED.items()}
    dropped.setdefault(FAILURE[0], [])
    if not verbose:
        for name, starts in QUIET_DROPPED.items():
            dropped.setdefault(name, []).extend(starts)
    for name, messages in dropped.items():
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, _Dropped)]:
            logger.removeFilter(old)
        logger.addFilter(_Dropped(tuple(messages), failures_too=not verbose))


def ray_errors_to_stderr() -> None:
    """Send the error messages Ray's GCS publishes to this driver (printed by Ray as its raylet's output, on
    standard output) to standard error. Ray looks its printer up by name each time (``ray._private.worker``,
    Ray 2.60); where it has no such printer, nothing changes."""
    from ray._private import worker

    printer = getattr(worker, "print_to_stdstream", None)
    if printer is None or getattr(printer, "dana_ray_to_stderr", False):
        return

    def to_stderr(data: dict, *args: Any, **kwargs: Any) -> None:
        if data.get("pid") == "raylet":
            data = dict(data, is_err=True)
        printer(data, *args, **kwargs)

    to_stderr.dana_ray_to_stderr = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_stderr
