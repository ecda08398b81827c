"""One sweep per experiment: the lock file claimed atomically before Ray starts (no Ray here)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from dana_ray.sweep.lock import LOCK_FILE, LockError, claim


def test_a_claim_holds_host_and_pid_and_refuses_a_second_until_released(tmp_path):
    lock = claim(str(tmp_path / "exp"))
    holder = json.loads((tmp_path / "exp" / LOCK_FILE).read_text())
    assert holder["host"] == socket.gethostname() and holder["pid"] == os.getpid()
    with pytest.raises(
        LockError,
        match=rf"--name: {tmp_path}/exp is in use by another sweep \(pid {os.getpid()} "
        rf"on host .*\); wait for it to end, or choose another --name",
    ):
        claim(str(tmp_path / "exp"))
    assert (tmp_path / "exp" / LOCK_FILE).exists()  # a refused claim leaves the holder's lock alone
    lock.release()
    claim(str(tmp_path / "exp")).release()


def test_release_removes_the_folders_the_claim_made_if_nothing_was_written(tmp_path):
    claim(str(tmp_path / "results" / "exp")).release()
    assert not (tmp_path / "results").exists()
    lock = claim(str(tmp_path / "results" / "exp"))
    (tmp_path / "results" / "exp" / "grid.yaml").write_text("")
    lock.release()
    assert sorted(os.listdir(tmp_path / "results" / "exp")) == ["grid.yaml"]


def test_a_stale_lock_from_a_dead_driver_is_reported_and_taken_over(tmp_path, capsys, notes):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
    lock = claim(str(tmp_path))
    err = capsys.readouterr().err
    assert err == (
        f"note: {tmp_path / LOCK_FILE} was left by a sweep driver that is no longer running (pid "
        f"{dead.pid} on {socket.gethostname()}); taking it over\n"
    )
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="a zombie is told from /proc")
def test_a_lock_whose_driver_is_a_zombie_or_ends_within_seconds_is_taken_over(tmp_path, notes):
    """A killed driver whose parent is gone stays a zombie where nothing reaps it (a container's first
    process), and one killed with its supervisor is still ending when a resume starts a moment later."""
    import time

    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    while open(f"/proc/{zombie.pid}/stat").read().rsplit(")", 1)[-1].split()[0] != "Z":
        time.sleep(0.01)  # polling a condition, bounded by the child's start
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": zombie.pid}))
    claim(str(tmp_path)).release()
    zombie.wait()

    ending = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": ending.pid}))
    claim(str(tmp_path)).release()  # it ends within ENDING_WAIT_S: waited for, then taken over
    ending.wait()


def test_a_lock_from_another_host_is_refused_with_what_to_do(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": "gpu-node-7", "pid": 4242}))
    with pytest.raises(
        LockError,
        match=rf"\(pid 4242 on host gpu-node-7\); if that driver is gone, delete "
        rf"{tmp_path / LOCK_FILE}; else choose another --name",
    ):
        claim(str(tmp_path))


CLAIMANT = """
import sys
from dana_ray.sweep.lock import LockError, claim
try:
    lock = claim(sys.argv[1])
except LockError:
    print("refused", flush=True)
else:
    print("claimed", flush=True)
    sys.stdin.read()  # hold the lock until the test closes stdin
    lock.release()
"""


def test_of_drivers_started_at_once_exactly_one_claims(tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMANT, str(tmp_path / "exp")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    answers = [p.stdout.readline().strip() for p in procs]
    for p in procs:
        p.stdin.close()
        p.wait(timeout=60)
    assert sorted(answers) == ["claimed", "refused", "refused", "refused"]
    assert not (tmp_path / "exp" / LOCK_FILE).exists()  # released


def test_a_lock_that_cannot_be_removed_is_a_note_not_a_traceback(tmp_path, monkeypatch, capsys, notes):
    lock = claim(str(tmp_path / "exp"))

    def refuse(path):
        raise PermissionError(1, "Operation not permitted", path)

    monkeypatch.setattr(os, "remove", refuse)  # as on storage turned read-only mid-run
    lock.release()
    assert capsys.readouterr().err == (
        f"note: could not remove {tmp_path / 'exp' / LOCK_FILE} (Operation not "
        f"permitted); the next sweep on this name takes it over\n"
    )
