"""Stop signals, from the moment the sweep's driver starts (standard library only, so that ``python -m
dana_ray.sweep`` handles them before anything heavy is imported).

Inside ``handled()``, SIGINT and SIGTERM are recorded (``received()``) and raised in the main thread as
``KeyboardInterrupt``, which the sweep turns into its one interrupted line and exit code 130, with its lock
released. While Tune runs, its own graceful stop takes the signals (``interrupt.StopWatch`` records them
and hands them on); Ray's ``ray.init`` puts its own SIGTERM handler in place, so the sweep calls
``reinstall()`` after it.

A Python signal handler runs only when the main thread is back in the interpreter. A driver blocked in a
call into Ray (a ``ray.get`` on a cluster the same signal killed, as ``timeout`` does: it signals the whole
process group, Ray's GCS and raylet included) would wait a minute for Ray's own timeout. So the first stop
signal also starts a deadline, kept by a thread that the C-level handler wakes (``signal.set_wakeup_fd``):
a driver still running ``GRACE_S`` seconds later runs its cleanups (``at_forced_exit``: the lock), prints
its last line (``last_line``) and exits with 130 at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

#: Seconds a driver has, after the first stop signal, to end by itself.
GRACE_S = 8.0
#: 128 + SIGINT, the shell's convention (``core.cli.EXIT_INTERRUPTED``; not imported: this module stays light).
EXIT_INTERRUPTED = 130
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_received: list[str] = []
_cleanups: list[Callable[[], None]] = []
_last_line: list[Callable[[str], str]] = []
_active: list[Any] = []  # the watchdog of the ``handled()`` in force, if any


def received() -> str | None:
    """The name of the first stop signal inside ``handled()`` (``"SIGINT"``, ``"SIGTERM"``), else None."""
    return _received[0] if _received else None


def note(name: str) -> None:
    """Record a stop (a signal a handler other than ours caught, a second Ctrl+C's KeyboardInterrupt)."""
    if not _received:
        _received.append(name)


def at_forced_exit(cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` if the driver is made to exit at the deadline (it must be safe to run twice)."""
    _cleanups.append(cleanup)


def last_line(say: Callable[[str], str]) -> None:
    """What a driver made to exit at the deadline prints on stderr: ``say(signal_name)``."""
    _last_line[:] = [say]


def _on_signal(number: int, frame: Any) -> None:
    note(signal.Signals(number).name)
    raise KeyboardInterrupt


def _record(number: int, frame: Any) -> None:
    note(signal.Signals(number).name)


def reinstall() -> None:
    """Put the sweep's handlers back (after ``ray.init`` or Tune replaced them)."""
    if _active and threading.current_thread() is threading.main_thread():
        for number in STOP_SIGNALS:
            signal.signal(number, _on_signal)


class _Watchdog:
    """The deadline: woken by the C-level signal handler through a pipe, whichever thread is blocked."""

    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe()
        os.set_blocking(self.write_end, False)
        self.done = threading.Event()
        self.quiet = False  # the driver has said its last line already
        self.thread = threading.Thread(target=self._watch, name="dana_ray-stop-deadline", daemon=True)

    def _watch(self) -> None:
        while True:
            try:
                woken = os.read(self.read_end, 64)
            except OSError:
                return
            if not woken or self.done.is_set():
                return
            stops = [n for n in woken if n in STOP_SIGNALS]
            if stops:
                break
        if self.done.wait(GRACE_S):
            return
        name = received() or signal.Signals(stops[0]).name
        for cleanup in _cleanups:
            with contextlib.suppress(Exception):
                cleanup()
        if not self.quiet:
            with contextlib.suppress(Exception):
                print(f"note: the driver did not stop within {GRACE_S:.0f} s of {name}; ending it", file=sys.stderr)
                print(_last_line[0](name) if _last_line else f"interrupted ({name})", file=sys.stderr)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)

    def close(self) -> None:
        self.done.set()
        os.close(self.write_end)  # the reader sees the end of the pipe
        self.thread.join(timeout=1.0)
        os.close(self.read_end)


@contextlib.contextmanager
def handled(outlive: bool = False) -> Iterator[None]:
    """Inside: SIGINT and SIGTERM are handled as the module says; outside, the handlers, the wakeup fd and
    the records are as they were. Nested uses are one; outside the main thread it does nothing.

    ``outlive`` (a process's entry point): when a stop signal came, the deadline goes on after the block
    (over the interpreter's exit, where Ray shuts down), and further signals are only recorded, so that no
    exit handler is cut short by a ``KeyboardInterrupt``."""
    if _active or threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    watchdog = _Watchdog()
    _active.append(watchdog)
    _received.clear()
    for number in STOP_SIGNALS:
        signal.signal(number, _on_signal)
    wakeup_before = signal.set_wakeup_fd(watchdog.write_end, warn_on_full_buffer=False)
    watchdog.thread.start()
    try:
        yield
    finally:
        if outlive and received():
            watchdog.quiet = True
            for number in STOP_SIGNALS:
                signal.signal(number, _record)
        else:
            signal.set_wakeup_fd(wakeup_before)
            for number, handler in before.items():
                signal.signal(number, handler)
            watchdog.close()
            _active.clear()
            _cleanups.clear()
            _last_line.clear()
