"""A stop while Tune runs: ``StopWatch``, a Tune callback in every sweep's run.

Tune stops a run gracefully on SIGINT (its handler, installed when the run starts, ends the trials and saves
the experiment's state) and then returns as if the run had ended. ``StopWatch.setup`` (called after that
handler is installed) puts a handler in front of it that records the signal (``signals.note``) and hands
it on; SIGTERM (``ray job stop``, a batch system's limit, ``timeout``) is handled the same way instead of
killing the driver without saving. The record is kept in ``signals``, not in the callback: Tune pickles its
callbacks with the experiment, and ``--resume`` runs an unpickled copy. The sweep tells the outcome of a
stop itself; Tune's own account of it is dropped (``tune_log``).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from ray import tune

from dana_ray.sweep import signals


class StopWatch(tune.Callback):
    def setup(
        self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None, **info: Any
    ) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        tune_handler = signal.getsignal(signal.SIGINT)

        def on_signal(number: int, frame: Any) -> None:
            signals.note(signal.Signals(number).name)
            if callable(tune_handler):
                tune_handler(signal.SIGINT, frame)
            else:
                raise KeyboardInterrupt

        for number in signals.STOP_SIGNALS:
            signal.signal(number, on_signal)
