"""Telling an interrupted sweep from a failed one: ``StopWatch``, a Tune callback in every sweep's run.

Tune stops a run gracefully on SIGINT (its handler, installed when the run starts, ends the trials and saves
the experiment's state) and then returns as if the run had ended. ``StopWatch.setup`` (called after that
handler is installed) puts a handler in front of it that records the signal here (``received()``) and hands
it on; SIGTERM (``ray job stop``, a batch system's limit) is handled the same way instead of killing the
driver without saving. The record is kept in this module, not in the callback: Tune pickles its callbacks
with the experiment, and ``--resume`` runs an unpickled copy.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from ray import tune

_received: list[str] = []


def received() -> str | None:
    """The name of the first stop signal since ``reset()`` (``"SIGINT"``, ``"SIGTERM"``), else None."""
    return _received[0] if _received else None


def reset() -> None:
    _received.clear()


def note(name: str) -> None:
    """Record a stop that did not come through a signal handler (a second Ctrl+C's KeyboardInterrupt)."""
    if not _received:
        _received.append(name)


class StopWatch(tune.Callback):
    def setup(
        self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None, **info: Any
    ) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        tune_handler = signal.getsignal(signal.SIGINT)

        def on_signal(number: int, frame: Any) -> None:
            note(signal.Signals(number).name)
            if callable(tune_handler):
                tune_handler(signal.SIGINT, frame)
            else:
                raise KeyboardInterrupt

        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, on_signal)


class _NoRestoreHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore(" not in record.getMessage()


def hide_tune_restore_hint() -> None:
    """Drop Tune's "Resume experiment with: Tuner.restore(...)" warning: the sweep prints its own line
    (``python -m dana_ray.sweep --resume --name ...``), which is the one that works here."""
    logger = logging.getLogger("ray.tune.tune")
    if not any(isinstance(f, _NoRestoreHint) for f in logger.filters):
        logger.addFilter(_NoRestoreHint())
