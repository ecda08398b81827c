"""What the sweep tells and keeps when things go wrong: resumes that apply or refuse every flag, checkpoint
fallbacks that survive damage in place, histories of one try, stop signals at any moment, quiet interrupts."""

from __future__ import annotations

import json
import os

import pytest
from helpers import TINY, trial_dict

from dana_ray.experiments.grid import load_grid, trial_from_tune
from dana_ray.sweep import main
from dana_ray.sweep.tuner import make_tuner
from dana_ray.trial import run

SHARDED = (
    TINY.replace("algorithm: [baseline, dana]", "algorithm: [dana]")
    .replace("seed: [0, 1]", "seed: [0]")
    .replace("epochs: 2", "epochs: 3")
    .replace("ray: {num_actors: 1, server_cpus: 0.25}", "ray: {num_actors: 1, server_cpus: 0.25, server_shards: 2}")
    .replace("max_failures: 1", "max_failures: 0")
)


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--only", "seed=0"], "--resume: --only would change which trials the experiment runs"),
        (["--smoke-test"], "--resume: --smoke-test would change which trials the experiment runs"),
        (["--executor", "local"], "--resume: --executor would change which trials the experiment runs"),
        (["--set", "lr=0.2"], "--set lr: a config field that changes what the experiment trains; a resumed"),
        (["--set", "compute.cpu_threads=2"], "--set compute.cpu_threads: a section option that changes what"),
    ],
)
def test_a_resume_refuses_a_flag_it_cannot_apply_in_one_line(flags, says, tmp_path, capsys):
    assert main(["--resume", "--storage", str(tmp_path), "--name", "x", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {says}") and len(err.splitlines()) == 1, err


@pytest.mark.slow  # 28 s; tests/test_ray_shards.py restores a checkpoint with another number of shards
@pytest.mark.usefixtures("ray_session")
def test_a_resume_with_another_number_of_server_shards_runs_with_it_to_the_undisturbed_sha(tmp_path, capsys):
    """A K = 2 trial whose server is killed after epoch 1 (no retries: the experiment is left unfinished),
    then ``--resume --set server_shards=3``: the trial goes on from its epoch-1 checkpoint on three shards,
    its params.json and the experiment's grid file say 3, and it ends with the undisturbed run's sha."""
    import ray
    from ray import tune

    killed = []

    class KillServerAfterEpoch1(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result["epoch"] == 1 and not killed:
                killed.append(str(trial))
                ray.kill(ray.get_actor(f"shards/{trial}/ParameterServer"))

    path = tmp_path / "sharded.yaml"
    path.write_text(SHARDED)
    grid = load_grid(str(path))
    storage = str(tmp_path / "results")
    assert len(make_tuner(grid, storage, "shards", callbacks=[KillServerAfterEpoch1()]).fit().errors) == 1
    capsys.readouterr()

    code = main(["--resume", "--storage", storage, "--name", "shards", "--set", "server_shards=3", "--no-report"])
    assert code == 0
    assert f"resuming {storage}/shards; server_shards: 3" in capsys.readouterr().out.splitlines()
    folder = next(
        os.path.join(storage, "shards", f) for f in os.listdir(os.path.join(storage, "shards")) if "_N2_" in f
    )
    params = json.load(open(os.path.join(folder, "params.json")))
    assert trial_from_tune(params)["ray"]["server_shards"] == 3
    assert load_grid(os.path.join(storage, "shards", "grid.yaml")).trial["ray"]["server_shards"] == 3
    rows = [json.loads(line) for line in open(os.path.join(folder, "result.json"))]
    assert (
        rows[-1]["epoch"] == 3
        and rows[-1]["params_sha256"] == run(trial_dict(grid.trials()[0], server_shards=1))["params_sha256"]
    )
    names = {a["Name"] for a in ray._private.state.actors().values()}  # the GCS's table, dead actors too
    assert f"shards/{killed[0]}/Shard-2" in names  # a third shard ran the resumed epochs


@pytest.mark.usefixtures("ray_session")
def test_a_resume_with_an_edited_grid_file_applies_what_may_change(tmp_path, capsys):
    """The grid file given again with a resumable setting changed (``server_shards``) and nothing else: the
    change is applied and said; a changed ``lr`` is refused naming it."""
    path = tmp_path / "sharded.yaml"
    path.write_text(SHARDED.replace("epochs: 3", "epochs: 1"))
    storage = str(tmp_path / "results")
    assert main([str(path), "--storage", storage, "--name", "edited", "--no-report"]) == 0
    path.write_text(SHARDED.replace("epochs: 3", "epochs: 1").replace("server_shards: 2", "server_shards: 3"))
    capsys.readouterr()
    assert main([str(path), "--resume", "--storage", storage, "--name", "edited", "--no-report"]) == 0
    assert f"resuming {storage}/edited; server_shards: 3" in capsys.readouterr().out.splitlines()
    path.write_text(SHARDED.replace("epochs: 3", "epochs: 1").replace("lr: 0.05", "lr: 0.1"))
    assert main([str(path), "--resume", "--storage", storage, "--name", "edited", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "(trial.lr: 0.05 -> 0.1)" in err and len(err.splitlines()) == 1


def _spawn(args: list[str], out, err, **env: str):
    """The sweep's command line in a process group of its own (as a shell runs it), its output unbuffered
    (as on a terminal: a line is written when printed, so lines can be counted from a moment on)."""
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "dana_ray.sweep", *args],
        stdout=out,
        stderr=err,
        start_new_session=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1", **env),
    )


def _wait_for(condition, process, timeout_s: float = 300.0) -> None:
    """Poll ``condition`` (bounded) while ``process`` runs."""
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, f"the sweep ended ({process.returncode}) before the moment came"
        assert time.monotonic() < deadline, "the moment never came"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def interrupted_quickstart(tmp_path_factory, shared_ray):
    """The quickstart (the README's first command, on the test session's Ray), Ctrl+C'd as a terminal does
    (SIGINT to its process group) once 3 trials have finished: its output, split at the signal."""
    import signal
    import time

    shared_ray.start()
    folder = tmp_path_factory.mktemp("quickstart")
    storage, out, err = folder / "results", folder / "out", folder / "err"
    with open(out, "w") as o, open(err, "w") as e:
        driver = _spawn(["--storage", str(storage), "--name", "qs"], o, e)
        _wait_for(lambda: "[3/99]" in out.read_text(), driver)
        before = (out.read_text(), err.read_text())
        sent = time.monotonic()
        os.killpg(driver.pid, signal.SIGINT)
        driver.wait(timeout=60)
    return {
        "storage": storage,
        "code": driver.returncode,
        "took_s": time.monotonic() - sent,
        "after": out.read_text()[len(before[0]) :].splitlines() + err.read_text()[len(before[1]) :].splitlines(),
        "all": out.read_text() + err.read_text(),
    }


def test_ctrl_c_of_the_quickstart_says_where_it_stands_and_how_to_go_on_in_a_few_lines(interrupted_quickstart):
    """At most 5 lines after the interrupt, among them the count (never "99 trials in t s") and the resume
    command; no Tune fetch errors, no traceback; exit 130 within 10 s; the lock released."""
    run = interrupted_quickstart
    storage = run["storage"]
    after = [line for line in run["after"] if line.strip()]
    assert run["code"] == 130 and run["took_s"] < 10, run
    assert len(after) <= 5, after
    assert after[-1] == f"continue with: python -m dana_ray.sweep --resume --name qs --storage {storage}", after
    status = next(line for line in after if line.startswith("interrupted (SIGINT): "))
    assert " of 99 trials finished, " in status and status.endswith(f"not started; results in {storage / 'qs'}")
    for noise in ("Failed to fetch metrics", "Traceback", "trials in ", "Stop signal received", "Tuner.restore("):
        assert noise not in run["all"], noise
    assert not (storage / "qs" / ".sweep.lock").exists()


def test_the_report_of_an_interrupted_experiment_counts_trials_never_started_as_pending(interrupted_quickstart):
    """Trials Tune named but never started are neither broken nor unreadable: their cells are incomplete."""
    from dana_ray.report import load_experiment

    trials = load_experiment(str(interrupted_quickstart["storage"] / "qs"))
    assert len(trials) == 99 and trials.attrs["broken"] == [] and not trials["broken"].astype(bool).any()
    assert 3 <= trials["finished"].sum() < 99


def _catches_sigterm(pid: int) -> bool:
    """Whether process ``pid`` has a handler for SIGTERM (Linux: the caught-signals mask in /proc)."""
    import signal

    try:
        status = open(f"/proc/{pid}/status").read()
    except OSError:
        return False
    caught = next(int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(caught & (1 << (signal.SIGTERM - 1)))


@pytest.mark.parametrize(
    "moment",
    [
        pytest.param("when it starts catching SIGTERM", marks=pytest.mark.slow),
        "when its lock is taken",  # while Ray starts: the moment a group's SIGTERM once cost 30 s
        pytest.param("when it says resuming", marks=pytest.mark.slow),
    ],
)
def test_a_sigterm_at_any_moment_of_a_resume_ends_it_within_10_s_with_its_line(
    moment, interrupted_quickstart, tmp_path
):
    """``timeout`` signals the whole process group, Ray's own processes included: a resume on a Ray of its
    own (``RAY_ADDRESS=local``) signalled while it imports, while Ray starts, or while Tune runs ends
    within 10 s with exit code 130, the line that continues it and its lock released."""
    import signal
    import time

    storage = interrupted_quickstart["storage"]
    lock = storage / "qs" / ".sweep.lock"
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "w") as o, open(err, "w") as e:
        driver = _spawn(["--resume", "--storage", str(storage), "--name", "qs"], o, e, RAY_ADDRESS="local")
        if moment == "when it starts catching SIGTERM":  # its first lines ran: while it imports the sweep
            _wait_for(lambda: _catches_sigterm(driver.pid), driver)
        elif moment == "when its lock is taken":
            _wait_for(lock.exists, driver)
        elif moment == "when it says resuming":
            _wait_for(lambda: "resuming " in out.read_text(), driver)
        sent = time.monotonic()
        os.killpg(driver.pid, signal.SIGTERM)
        driver.wait(timeout=60)
    took = time.monotonic() - sent
    lines = err.read_text().strip().splitlines()
    assert driver.returncode == 130 and took < 10, (took, driver.returncode, lines[-3:])
    if moment == "when it starts catching SIGTERM":
        assert lines[-1] in (
            "interrupted (SIGTERM) before the sweep started",
            f"continue with: python -m dana_ray.sweep --resume --name qs --storage {storage}",
        )
    else:
        assert lines[-1] == f"continue with: python -m dana_ray.sweep --resume --name qs --storage {storage}"
    assert "Traceback" not in err.read_text() and not lock.exists()


def test_the_fallback_checkpoint_survives_the_latest_truncated_in_place(tmp_path):
    """The fallback is kept from the checkpoint about to be superseded; damage to that checkpoint's file in
    place (truncated to zero bytes, same inode) leaves the fallback whole: the trial resumes from it."""
    import torch
    from ray import tune

    from dana_ray.sweep.checkpoints import PREVIOUS_FILE, STATE_FILE, keep_previous, readable_state

    latest = tmp_path / "checkpoint_000000"
    latest.mkdir()
    torch.save({"epoch": 3, "history": [], "master": {}}, latest / STATE_FILE)
    keep_previous(tune.Checkpoint(str(latest)))  # as before the next checkpoint is reported
    os.truncate(latest / STATE_FILE, 0)  # in place: a hard link would be cut too
    state, note = readable_state(tune.Checkpoint(str(latest)))
    assert state is not None and state["epoch"] == 3, note
    assert note.endswith(f"cannot be read; resumed from {tmp_path / PREVIOUS_FILE} (epoch 3)")


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize(
    "damaged",
    [pytest.param("latest", marks=pytest.mark.slow), "latest and previous"],  # both go back one way
)
def test_a_trial_that_goes_back_keeps_a_history_of_one_try(damaged, tmp_path, capsys, notes):
    """The epoch-3 checkpoint truncated in place (and with it the fallback, in the second case), then the
    trial's server killed: the trial goes on from epoch 2's state (or from its beginning), says so in one
    note, ends with the undisturbed sha, and its result.json and progress.csv hold one try: epochs 1..4,
    once each, in order; the report reads the same."""
    import csv

    import ray
    from ray import tune

    from dana_ray.report import load_experiment
    from dana_ray.sweep.checkpoints import PREVIOUS_FILE, STATE_FILE

    damaged_files = []

    class DamageThenKill(tune.Callback):
        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            if not damaged_files and os.path.basename(checkpoint.path) == "checkpoint_000002":
                damaged_files.append(os.path.join(checkpoint.path, STATE_FILE))
                if damaged == "latest and previous":
                    damaged_files.append(os.path.join(os.path.dirname(checkpoint.path), PREVIOUS_FILE))
                for file in damaged_files:
                    os.truncate(file, 0)
                ray.kill(ray.get_actor(f"back/{trial}/ParameterServer"))

    path = tmp_path / "grid.yaml"
    path.write_text(TINY.replace("epochs: 2", "epochs: 4"))
    grid = load_grid(str(path))
    grid.axes = dict(grid.axes, algorithm=["dana"], seed=[0])
    results = make_tuner(grid, str(tmp_path), "back", callbacks=[DamageThenKill()]).fit()
    assert damaged_files and not results.errors
    assert results[0].metrics["params_sha256"] == run(grid.trials()[0])["params_sha256"]
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")]
    assert len(said) == 1, said
    if damaged == "latest":
        assert said[0].endswith(f"/{PREVIOUS_FILE} (epoch 2)")
    else:
        assert said[0].endswith("and no earlier one can; the trial starts again from its beginning")
    folder = results[0].path
    rows = [json.loads(line) for line in open(os.path.join(folder, "result.json"))]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert [int(r["epoch"]) for r in csv.DictReader(open(os.path.join(folder, "progress.csv")))] == [1, 2, 3, 4]
    assert sum(bool(r["checkpoint_note"]) for r in rows) == 1  # with the first epoch of the try that went on
    with open(os.path.join(folder, "progress.csv")) as f:  # every row under the header's columns
        assert {len(row) for row in csv.reader(f)} == {len(rows[0]) - 1}  # result.json's keys, less "config"
    trials = load_experiment(str(tmp_path / "back"))
    assert trials["finished"].all() and list(map(len, trials["curve"])) == [4]


def _screen(raw: str) -> list[str]:
    """What a terminal shows after ``raw``: text, newlines, carriage returns, and the two controls the status
    block redraws with (``ESC[nF``: up n lines to their start; ``ESC[J``: clear to the end); colours dropped."""
    import re

    lines, row, col = [""], 0, 0
    for token in re.split(r"(\x1b\[\d*F|\x1b\[J|\n|\r)", re.sub(r"\x1b\[[0-9;]*m", "", raw)):
        up = re.fullmatch(r"\x1b\[(\d*)F", token)
        if up:
            row, col = max(0, row - int(up.group(1) or 1)), 0
        elif token == "\x1b[J":
            lines[row] = lines[row][:col]
            del lines[row + 1 :]
        elif token == "\n":
            row, col = row + 1, 0
            lines += [""] * (row + 1 - len(lines))
        elif token == "\r":
            col = 0
        elif token:
            lines[row] = lines[row][:col] + token + lines[row][col + len(token) :]
            col += len(token)
    return lines


def test_on_a_terminal_the_status_block_ends_once_and_cleanly(tmp_path, shared_ray):
    """A sweep on a terminal (a pseudo-terminal here, read as a terminal shows it): one status block at the
    end, saying every trial is done, then the report; no line of Tune's inside or below a stale copy. Ray,
    which it starts with its default token authentication, is told of in one line, the dashboard's address
    and how to get in, in place of Ray's token warning."""
    import pty
    import subprocess
    import sys

    shared_ray.start()
    grid = tmp_path / "tiny.yaml"
    grid.write_text(
        "trial: {epochs: 2, compute: {cpu_threads: 1, cpus_per_actor: 0.25}}\n"
        "grid: {algorithm: [asgd, dana], num_workers: [4]}\ntune: {executor: local, trial_cpus: 0.25}\n"
    )
    leader, follower = pty.openpty()
    args = [str(grid), "--storage", str(tmp_path), "--name", "tty"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}  # Ray's default: it turns tokens on
    driver = subprocess.Popen(
        [sys.executable, "-m", "dana_ray.sweep", *args],
        stdout=follower,
        stderr=follower,
        start_new_session=True,
        env=env,
    )
    os.close(follower)
    raw = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal's other end closed: the sweep ended
            break
        if not chunk:
            break
        raw += chunk
    os.close(leader)
    assert driver.wait(timeout=120) == 0
    shown = [line for line in _screen(raw.decode()) if line.strip()]
    blocks = [k for k, line in enumerate(shown) if " trials done, " in line]
    assert len(blocks) == 1, shown
    assert shown[blocks[0]].startswith("2 of 2 trials done, 0 running, 0 pending, 0 errored; "), shown
    assert [line[:8] for line in shown[blocks[0] + 1 : blocks[0] + 3]] == ["  last: "] * 2, shown
    assert shown[blocks[0] + 3].startswith("2 trials in "), shown
    dashboard = [line for line in shown if line.startswith("Ray dashboard: http://127.0.0.1:")]
    assert len(dashboard) == 1 and "ray get-auth-token" in dashboard[0], shown
    assert "Token authentication is enabled" not in raw.decode()
