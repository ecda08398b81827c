"""One sweep per experiment: a lock file in the experiment folder, claimed before Ray starts.

``claim(path)`` creates ``path/.sweep.lock`` with ``O_CREAT | O_EXCL`` (atomic on a local file system: of two
drivers started at once, exactly one creates it) holding the driver's host, pid and start time, and returns
an ``ExperimentLock`` whose ``release()`` removes it, and removes the folders the claim made if nothing else
was written into them (a sweep refused after the claim leaves no trace). A lock whose driver is dead (same
host, no such process or a zombie; one that is ending is waited for up to ``ENDING_WAIT_S``) is stale: it is
reported in one line and taken over. A lock held by a live driver, or by one on another host (which this
host cannot see), refuses the claim with a ``LockError`` that names the holder and says how to proceed.

Local paths only: object stores (``s3://``, ``gs://``) have no atomic create-if-absent here, so a URI is
not locked (the README says so).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time

log = logging.getLogger(__name__)

LOCK_FILE = ".sweep.lock"


class LockError(ValueError):
    """The experiment is held by another sweep driver; the message names it."""


class ExperimentLock:
    def __init__(self, path: str, made: list[str]) -> None:
        self.path, self.made = path, made
        self.released = False

    @property
    def file(self) -> str:
        return os.path.join(self.path, LOCK_FILE)

    def release(self) -> None:
        """Remove the lock file, then each folder the claim made that is now empty (innermost first); once
        (a second call, e.g. at a forced exit, leaves a lock another sweep took since alone)."""
        if self.released:
            return
        self.released = True
        try:
            os.remove(self.file)
        except FileNotFoundError:
            pass
        except OSError as error:  # read-only storage: the lock stays, and is stale once this process ends
            log.warning(
                "could not remove %s (%s); the next sweep on this name takes it over", self.file, error.strerror
            )
            return
        _remove_empty(self.made)


def _remove_empty(folders: list[str]) -> None:
    for folder in folders:  # innermost first
        try:
            os.rmdir(folder)
        except OSError:  # not empty: something was written there
            return


#: How long a claim waits for a holder on this host that is ending (a driver just killed: its supervisor
#: ended, and the driver is being killed with it) before it says the experiment is in use.
ENDING_WAIT_S = 3.0


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs here: a zombie (ended, not yet reaped: a killed driver whose parent is
    gone, in a container whose first process reaps nothing) has ended."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (not Linux), or it ended just now
        return os.path.exists(f"/proc/{pid}") or not os.path.isdir("/proc")


def _ends_soon(pid: int) -> bool:
    """Whether ``pid`` ends within ``ENDING_WAIT_S`` (polled: a process of another session cannot be waited on)."""
    deadline = time.monotonic() + ENDING_WAIT_S
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _holder(file: str) -> dict:
    try:
        with open(file) as f:
            holder = json.load(f)
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}  # being written, or cut short: no host or pid to judge by


def claim(path: str) -> ExperimentLock:
    """Claim the experiment folder ``path`` (made if missing) for this process; see the module's doc."""
    made = []
    folder = os.path.abspath(path)
    while not os.path.isdir(folder):
        made.append(folder)
        folder = os.path.dirname(folder)
    os.makedirs(path, exist_ok=True)
    lock = ExperimentLock(path, made)
    record = json.dumps(
        {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "command": " ".join(sys.argv)}
    )
    for attempt in range(2):
        try:
            fd = os.open(lock.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(lock.file)
            host, pid = holder.get("host"), holder.get("pid")
            if attempt == 0 and host == socket.gethostname() and isinstance(pid, int) and _ends_soon(pid):
                log.warning(
                    "%s was left by a sweep driver that is no longer running (pid %s on %s); taking it over",
                    lock.file,
                    pid,
                    host,
                )
                os.remove(lock.file)
                continue
            who = f"pid {pid} on host {host}" if host else "a driver that has not written its name yet"
            if host == socket.gethostname():
                advice = "wait for it to end, or choose another --name"
            else:  # another host's process cannot be seen from here
                advice = f"if that driver is gone, delete {lock.file}; else choose another --name"
            _remove_empty(made)
            raise LockError(f"--name: {path} is in use by another sweep ({who}); {advice}") from None
        with os.fdopen(fd, "w") as f:
            f.write(record)
        return lock
    raise AssertionError("unreachable")  # pragma: no cover
