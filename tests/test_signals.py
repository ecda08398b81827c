"""The sweep's command runs its driver under a supervisor (``dana_ray.sweep.signals.supervise``): exit codes
pass through, a signal to the command's process group reaches the driver once and not the processes the
driver started (Ray's), a driver stuck after a stop is ended at the deadline with its lines and its lock
removed, and a driver never outlives its supervisor. Each test runs a small command of its own, no Ray."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="the supervisor needs Linux's pidfd_open")

# ``run`` in the driver: writes its pid and its child's to ``state``, then does what ``behaviour`` says.
DRIVER = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    from dana_ray.sweep import signals

    state, behaviour = sys.argv[1], sys.argv[2]

    def run():
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        lock = os.path.join(os.path.dirname(state), ".sweep.lock")
        with open(lock, "w") as f:
            json.dump({"host": __import__("socket").gethostname(), "pid": os.getpid()}, f)
        signals.tell_supervisor(lock, ["interrupted ({signal}): results in HERE", "continue with: AGAIN"])
        with open(state + ".tmp", "w") as f:
            json.dump({"driver": os.getpid(), "helper": helper.pid}, f)
        os.replace(state + ".tmp", state)
        try:
            if behaviour == "exit 3":
                return 3
            while True:
                try:
                    time.sleep(60)
                except KeyboardInterrupt:
                    try:  # a helper the signal reached would be gone within the second
                        helper.wait(timeout=1)
                        helper_after = "helper ended"
                    except subprocess.TimeoutExpired:
                        helper_after = "helper running"
                    with open(state + ".stops", "a") as f:
                        f.write(signals.received() + " " + helper_after + "\\n")
                    if behaviour == "stops when asked":
                        os.remove(lock)
                        return signals.EXIT_INTERRUPTED
        finally:
            if behaviour != "stuck":
                helper.kill()

    raise SystemExit(signals.supervise(run, early_line="interrupted ({signal}) early"))
    """
)


def _start(tmp_path, behaviour: str) -> tuple[subprocess.Popen, dict]:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    state = tmp_path / "state.json"
    command = subprocess.Popen(
        [sys.executable, str(script), str(state), behaviour],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # as a shell runs a command: a process group of its own
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])),
    )
    deadline = time.monotonic() + 60
    while not state.exists():
        assert command.poll() is None, command.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return command, json.loads(state.read_text())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie (ended, not yet reaped) counts as ended
        return f.read().split(")")[-1].split()[0] != "Z"


def test_the_drivers_exit_code_passes_through_and_it_runs_in_a_group_of_its_own(tmp_path):
    command, pids = _start(tmp_path, "exit 3")
    assert command.wait(timeout=30) == 3
    assert pids["driver"] != command.pid


def test_a_signal_to_the_commands_group_reaches_the_driver_once_and_not_what_it_started(tmp_path):
    command, pids = _start(tmp_path, "stops when asked")
    assert os.getpgid(pids["driver"]) != os.getpgid(command.pid)
    os.killpg(command.pid, signal.SIGTERM)  # as ``timeout`` does
    assert command.wait(timeout=30) == 130
    assert (tmp_path / "state.json.stops").read_text() == "SIGTERM helper running\n"
    assert "note:" not in command.stderr.read()


def test_a_driver_stuck_after_a_stop_is_ended_at_the_deadline_with_its_lines_and_its_lock_removed(tmp_path):
    from dana_ray.sweep.signals import GRACE_S

    command, pids = _start(tmp_path, "stuck")
    sent = time.monotonic()
    os.killpg(command.pid, signal.SIGINT)  # as Ctrl+C at a terminal does
    assert command.wait(timeout=60) == 130
    took = time.monotonic() - sent
    assert GRACE_S <= took < GRACE_S + 5, took
    lines = command.stderr.read().strip().splitlines()
    assert lines == [
        f"note: the driver did not stop within {GRACE_S:.0f} s of SIGINT; ended it",
        "interrupted (SIGINT): results in HERE",
        "continue with: AGAIN",
    ], lines
    assert not (tmp_path / ".sweep.lock").exists()
    assert not _alive(pids["driver"])
    assert socket.gethostname()  # the lock was judged by host and pid


def test_a_driver_never_outlives_its_supervisor(tmp_path):
    command, pids = _start(tmp_path, "stuck")
    os.kill(command.pid, signal.SIGKILL)  # as ``ray job stop`` does when the job does not end in time
    command.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _alive(pids["driver"]):
        assert time.monotonic() < deadline, "the driver outlived its supervisor"
        time.sleep(0.05)


FORK_HOOK = textwrap.dedent(
    """
    import contextlib, os, signal, sys
    from dana_ray.sweep import signals

    sent = []

    def signal_once():  # a SIGTERM that lands while a fork's handlers run, as one did in ``ray.init``
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    os.register_at_fork(after_in_parent=signal_once)
    os.register_at_fork(after_in_parent=lambda: None)
    with signals.handled():
        try:
            with signals.deferred() if sys.argv[1] == "deferred" else contextlib.nullcontext():
                pid = os.fork()
                if pid == 0:
                    os._exit(0)
                os.waitpid(pid, 0)
            print("went on")
        except KeyboardInterrupt:
            print("interrupted by", signals.received())
    """
)


@pytest.mark.parametrize("block, outcome", [("deferred", "interrupted by SIGTERM"), ("plain", "went on")])
def test_a_stop_during_a_fork_is_kept_inside_deferred_and_lost_outside_it(block, outcome):
    """Python ignores an exception raised in a fork handler: a stop raised there is lost (``plain``, the
    reason ``ray.init`` runs inside ``signals.deferred()``), while ``deferred`` records it and raises it after."""
    done = subprocess.run([sys.executable, "-c", FORK_HOOK, block], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == outcome, (done.stdout, done.stderr[-500:])
