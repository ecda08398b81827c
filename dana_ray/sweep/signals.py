"""Stop signals, from the moment the sweep's driver starts (standard library only, so that ``python -m
dana_ray.sweep`` handles them before anything heavy is imported).

Inside ``handled()``, SIGINT and SIGTERM are recorded (``received()``) and raised in the main thread as
``KeyboardInterrupt``, which the sweep turns into its one interrupted line and exit code 130, with its lock
released. While Tune runs, its own graceful stop takes the signals (``interrupt.StopWatch`` records them
and hands them on). Calls that start processes (``ray.init``) run inside ``deferred()``: a signal raised in
a fork handler is lost (Python prints "Exception ignored in" and goes on), so there a stop is only recorded,
and raised when the call returns.

``python -m dana_ray.sweep`` runs the driver under ``supervise()``: the command's process forks, and the
driver runs in the child, in a process group of its own, with Ray's local processes under it. The
supervisor (this module only) hands each stop signal on to the driver, and passes on the driver's exit code.
Two things follow:

- a signal sent to the command's whole process group (``timeout``, Ctrl+C at a terminal, ``ray job stop``)
  reaches the driver alone, not Ray's GCS and raylet while they start: a dead GCS would hold the driver in
  ``ray.init`` for 30 s, in a call that keeps the interpreter's lock, so that no handler or thread could run;
- a driver still running ``GRACE_S`` seconds after the first stop signal (blocked on a cluster that went
  away) is ended by the supervisor, which removes the driver's lock, says the lines the driver gave it
  (``tell_supervisor``) and exits 130.

The driver dies with the supervisor (``PR_SET_PDEATHSIG``). Where ``os.fork`` or ``os.pidfd_open`` is missing
(not Linux), the driver runs in the command's own process, with the handlers and no deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

#: Seconds a driver has, after the first stop signal, to end by itself.
GRACE_S = 8.0
#: 128 + SIGINT, the shell's convention (``core.cli.EXIT_INTERRUPTED``; not imported: this module stays light).
EXIT_INTERRUPTED = 130
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: What the supervisor hands on as what: a hang-up (the terminal closed) stops the driver as SIGTERM does.
_HANDED_ON = {signal.SIGINT: signal.SIGINT, signal.SIGTERM: signal.SIGTERM, signal.SIGHUP: signal.SIGTERM}
_PR_SET_PDEATHSIG = 1

_received: list[str] = []
_active: list[bool] = []  # a ``handled()`` is in force
_to_supervisor: list[int] = []  # in a supervised driver: the pipe's end it writes to


def received() -> str | None:
    """The name of the first stop signal inside ``handled()`` (``"SIGINT"``, ``"SIGTERM"``), else None."""
    return _received[0] if _received else None


def note(name: str) -> None:
    """Record a stop (a signal a handler other than ours caught, a second Ctrl+C's KeyboardInterrupt)."""
    if not _received:
        _received.append(name)


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


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Inside ``handled()``: a stop signal is only recorded, and raised as ``KeyboardInterrupt`` when the block
    ends (without an exception of its own); the sweep's handlers are back in place after it. A stop that came
    before the block is not raised again. Outside ``handled()`` or the main thread it does nothing."""
    if not _active or threading.current_thread() is not threading.main_thread():
        yield
        return
    stopped_before = received() is not None
    for number in STOP_SIGNALS:
        signal.signal(number, _record)
    try:
        yield
    finally:
        reinstall()
    if received() is not None and not stopped_before:
        raise KeyboardInterrupt


@contextlib.contextmanager
def handled(outlive: bool = False) -> Iterator[None]:
    """Inside: SIGINT and SIGTERM are handled as the module says; outside, the handlers and the records are
    as they were. Nested uses are one; outside the main thread it does nothing.

    ``outlive`` (a process's entry point): when a stop signal came, further signals are only recorded after
    the block, so that no exit handler (Ray's shutdown) is cut short by a ``KeyboardInterrupt``."""
    if _active or threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    _active.append(True)
    _received.clear()
    for number in STOP_SIGNALS:
        signal.signal(number, _on_signal)
    try:
        yield
    finally:
        _active.clear()
        if outlive and received():
            for number in STOP_SIGNALS:
                signal.signal(number, _record)
        else:
            for number, handler in before.items():
                signal.signal(number, handler)


def tell_supervisor(lock_file: str | None, lines: list[str]) -> None:
    """What the supervisor does if it must end this driver: remove ``lock_file`` (when it still holds this
    process's pid) and print ``lines``, with ``{signal}`` replaced by the signal's name. Nothing when the
    driver is not supervised."""
    if not _to_supervisor:
        return
    message = json.dumps({"lock": lock_file, "pid": os.getpid(), "lines": lines}) + "\n"
    with contextlib.suppress(OSError):
        os.write(_to_supervisor[0], message.encode())


def supervise(run: Callable[[], int], early_line: str) -> int:
    """Run ``run()`` as the module says and return its exit code (in both processes: the caller raises
    ``SystemExit`` with it). ``early_line`` (with ``{signal}``) is said by a driver stopped before ``run``."""
    can_fork = hasattr(os, "fork") and hasattr(os, "pidfd_open") and sys.platform.startswith("linux")
    if not can_fork or threading.active_count() > 1 or threading.current_thread() is not threading.main_thread():
        return _run_handled(run, early_line)
    stops = set(_HANDED_ON)
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # until each side has its handlers: none is lost
    read_end, write_end = os.pipe()
    supervisor = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        return _driver(run, early_line, write_end, supervisor, stops)
    os.close(write_end)
    return _Supervisor(pid, read_end).wait(stops)


def _driver(
    run: Callable[[], int], early_line: str, write_end: int, supervisor: int, stops: set[signal.Signals]
) -> int:
    os.setpgid(0, 0)  # the supervisor's process group is signalled; this one only through the supervisor
    _die_with(supervisor)
    _to_supervisor[:] = [write_end]
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    return _run_handled(run, early_line, unblock=stops)  # a signal that came since the fork: raised at unblock


def _run_handled(run: Callable[[], int], early_line: str, unblock: set[signal.Signals] | None = None) -> int:
    """``run()`` inside ``handled(outlive=True)``, after unblocking ``unblock``; a stop before ``run`` could
    say so itself ends with ``early_line`` and 130."""
    with handled(outlive=True):
        try:
            if unblock:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, unblock)
            return run()
        except KeyboardInterrupt:
            print(early_line.replace("{signal}", received() or "SIGINT"), file=sys.stderr)
            return EXIT_INTERRUPTED


def _die_with(supervisor: int) -> None:
    """SIGKILL this process when the supervisor ends (SIGKILLed itself, say, by ``ray job stop``)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != supervisor:  # it ended before the line above
        os._exit(EXIT_INTERRUPTED)


class _Stop(Exception):
    """A stop signal reached the supervisor (raised by its handler, to wake its ``select``)."""


class _Supervisor:
    def __init__(self, pid: int, read_end: int) -> None:
        self.pid, self.read_end = pid, read_end
        self.first_stop: tuple[str, float] | None = None
        self.told = b""
        self.selecting = False  # a first stop wakes the ``select`` (``_Stop``) only while it waits

    def _hand_on(self, number: int, frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, _HANDED_ON[signal.Signals(number)])
        if self.first_stop is None:
            self.first_stop = (signal.Signals(_HANDED_ON[signal.Signals(number)]).name, time.monotonic())
            if self.selecting:
                raise _Stop

    def wait(self, stops: set[signal.Signals]) -> int:
        """The driver's exit code (128 + the signal that killed it), or 130 once it was ended at the deadline."""
        for number in stops:
            signal.signal(number, self._hand_on)
        ended = os.pidfd_open(self.pid)
        reading = [self.read_end]
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
        while True:
            timeout = None
            if self.first_stop is not None:
                timeout = max(0.0, self.first_stop[1] + GRACE_S - time.monotonic())
            self.selecting = True
            try:
                ready, _, _ = select.select([ended, *reading], [], [], timeout)
            except _Stop:
                continue
            finally:
                self.selecting = False
            if ended in ready:
                break
            if self.read_end in ready:
                data = os.read(self.read_end, 65536)
                if data:
                    self.told += data
                else:
                    reading = []
            elif not ready:
                return self._end_driver()
        _, status = os.waitpid(self.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code

    def _end_driver(self) -> int:
        assert self.first_stop is not None
        name = self.first_stop[0]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # the driver and the Ray processes it started here
        os.waitpid(self.pid, 0)
        told: dict[str, Any] = {}
        for line in self.told.decode(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                told = json.loads(line)
        lock_file = told.get("lock")
        if lock_file:
            _remove_lock(lock_file, self.pid)
        print(f"note: the driver did not stop within {GRACE_S:.0f} s of {name}; ended it", file=sys.stderr)
        for line in told.get("lines") or [f"interrupted ({name})"]:
            print(line.replace("{signal}", name), file=sys.stderr)
        return EXIT_INTERRUPTED


def _remove_lock(lock_file: str, pid: int) -> None:
    """Remove the lock if the ended driver holds it (the lock's own format: ``lock.claim``)."""
    try:
        with open(lock_file) as f:
            holder = json.load(f)
        if holder.get("pid") == pid and holder.get("host") == socket.gethostname():
            os.remove(lock_file)
    except (OSError, ValueError, AttributeError):
        pass
