"""A real Tune run of a tiny grid: trials equal trial.run, a failed trial resumes, --resume, the report."""

from __future__ import annotations

import json
import os
import socket

import pytest
from helpers import TINY

from dana_ray.config import get_option
from dana_ray.experiments.fits import data_key
from dana_ray.experiments.grid import load_grid, trial_from_tune
from dana_ray.report import load_experiment
from dana_ray.schedules.trace import TRACE_FILE, read_trace
from dana_ray.sweep import main
from dana_ray.sweep.tuner import make_tuner
from dana_ray.trial import run

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory):
    path = tmp_path_factory.mktemp("grid") / "tiny.yaml"
    path.write_text(TINY)
    return str(path)


@pytest.fixture(scope="module")
def experiment(tiny_grid, tmp_path_factory, shared_ray):
    shared_ray.start()  # before the sweep, which would start a Ray of its own
    storage = tmp_path_factory.mktemp("results")
    assert main([tiny_grid, "--storage", str(storage), "--name", "tiny", "--no-report"]) == 0
    return str(storage / "tiny")


def test_every_trial_ran_every_epoch(experiment):
    trials = load_experiment(experiment)
    assert sorted(zip(trials["algorithm"], trials["num_workers"], trials["seed"])) == [
        ("baseline", 1, 0),
        ("baseline", 1, 1),
        ("dana", 2, 0),
        ("dana", 2, 1),
    ]
    assert trials["finished"].all() and (trials["epochs_done"] == 2).all()
    folder = next(f for f in os.listdir(experiment) if f.startswith("dana_N2_round-robin_s0"))
    results = [json.loads(line) for line in open(os.path.join(experiment, folder, "result.json"))]
    assert [r["epoch"] for r in results] == [1, 2]
    assert list(results[0])[:2] == ["test_error", "epoch"]  # the console table's first metric columns
    # every gradient applied is in the epoch's delay histogram (N = 2, round robin: delays 0 then 1)
    assert sum(results[1]["delay_histogram"]) == results[1]["gradients"] and results[1]["delay_histogram"][1] > 0
    assert 0.0 <= results[1]["server_busy"] <= 1.0
    assert trials.set_index(["algorithm", "seed"]).loc[("dana", 0), "delay_histogram"][1] > 0
    assert 0 < results[0]["sim_time"] < results[1]["sim_time"] and 0 < results[0]["wall_time"] < results[1]["wall_time"]
    # the Ray executor's trial records every applied job's compute time: a trace ``schedule: trace`` replays
    times = read_trace(os.path.join(experiment, folder, TRACE_FILE))
    assert len(times) == 2 and sum(map(len, times)) == sum(r["gradients"] for r in results)


def test_a_tune_trial_is_exactly_trial_run(experiment):
    trials = load_experiment(experiment).set_index(["algorithm", "seed"])
    folder = trials.loc[("dana", 1), "trial"]
    params = json.load(open(os.path.join(experiment, folder, "params.json")))
    assert trials.loc[("dana", 1), "params_sha256"] == run(trial_from_tune(params))["params_sha256"]


def exported_disagreements(experiment: str, executor: str, timeout_s: float = 60.0) -> list[str]:
    """Read the live metrics back from this node's metrics export port (Prometheus's text format, as Ray's
    agent serves it) until every trial's series agree with its result.json: gradients applied (summed over
    workers) and the delay histogram's count equal the gradients of its epochs, the last test error and step
    equal its last epoch's, and bytes moved are positive on the Ray executor and absent locally (nothing
    moves). Returns the trials that still disagree after ``timeout_s`` (the agent collects about once a
    second)."""
    import re
    import time
    import urllib.request

    import ray

    name = os.path.basename(experiment)
    expected = {}
    for trial in os.listdir(experiment):
        if os.path.isfile(os.path.join(experiment, trial, "result.json")):
            rows = [r for r in map(json.loads, open(os.path.join(experiment, trial, "result.json"))) if "epoch" in r]
            gradients = sum(r["gradients"] for r in rows)
            expected[f"{name}/{trial}"] = {
                "ray_dana_gradients_applied_total": gradients,
                "ray_dana_gradient_delay_count": gradients,
                "ray_dana_test_error": rows[-1]["test_error"],
                "ray_dana_step": rows[-1]["step"],
            }
    url = f"http://127.0.0.1:{ray._private.worker.global_worker.node.metrics_export_port}/metrics"
    line = re.compile(r"^(ray_dana_\w+)\{(.*)\} (\S+)$")
    deadline = time.monotonic() + timeout_s
    while True:
        seen: dict[str, dict[str, float]] = {}
        for text in urllib.request.urlopen(url, timeout=10).read().decode().splitlines():
            match = line.match(text)
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2))) if match else {}
            if labels.get("trial") in expected and labels.get("executor") == executor:
                series = seen.setdefault(labels["trial"], {})
                series[match.group(1)] = series.get(match.group(1), 0.0) + float(match.group(3))
        wrong = [
            t
            for t, want in expected.items()
            if any(seen.get(t, {}).get(k) != pytest.approx(v, rel=1e-12) for k, v in want.items())
            or (seen.get(t, {}).get("ray_dana_bytes_moved_total", 0) > 0) != (executor == "ray")
        ]
        if not wrong or time.monotonic() > deadline:
            return [f"{t}: result.json {expected[t]}, exported {seen.get(t)}" for t in wrong]
        time.sleep(0.5)  # the agent's next collection


def test_each_trial_exports_live_metrics_that_match_its_results(experiment):
    """Ray executor: each trial's ParameterServer exported its live figures, tagged with the trial, equal to
    what the trial's result file says."""
    assert exported_disagreements(experiment, "ray") == []


def test_trial_parallel_sweep_computes_what_the_actors_compute(experiment, tiny_grid, tmp_path):
    """``--executor local``: each Tune trial simulates its workers in its own process, on one bundle; the
    trials end with the Ray executor's params_sha256, trial for trial, and export the same live metrics
    from the trial process."""
    assert main([tiny_grid, "--executor", "local", "--storage", str(tmp_path), "--name", "local", "--no-report"]) == 0
    key = ["algorithm", "num_workers", "seed"]
    on_ray = load_experiment(experiment).set_index(key)["params_sha256"]
    local = load_experiment(str(tmp_path / "local")).set_index(key)["params_sha256"]
    assert len(local) == 4 and local.str.len().eq(64).all() and local.sort_index().equals(on_ray.sort_index())
    clocks = [
        load_experiment(e).set_index(key)["sim_times"].sort_index() for e in (experiment, str(tmp_path / "local"))
    ]
    assert clocks[0].equals(clocks[1])  # the simulated clock is the schedule's, whichever executor
    assert exported_disagreements(str(tmp_path / "local"), "local") == []


def test_a_failed_trial_resumes_from_its_last_epoch(tiny_grid, tmp_path):
    """Kill a trial's ParameterServer after its first epoch: Tune restarts the trial from the epoch-1
    checkpoint, and it finishes with the same parameters as an undisturbed run."""
    import ray
    from ray import tune

    killed = []

    class KillServerAfterEpoch1(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result["epoch"] == 1 and not killed:
                killed.append(trial.trial_id)
                ray.kill(ray.get_actor(f"resume/{trial}/ParameterServer"))  # str(trial): its name

    grid = load_grid(tiny_grid)
    grid.axes = dict(grid.axes, algorithm=["dana"], seed=[0])
    grid.trial = dict(grid.trial, epochs=3)
    results = make_tuner(grid, str(tmp_path), "resume", callbacks=[KillServerAfterEpoch1()]).fit()
    assert killed and not results.errors
    result = results[0]
    assert result.metrics["epoch"] == 3
    assert result.metrics["params_sha256"] == run(grid.trials()[0])["params_sha256"]
    reported = [json.loads(line)["epoch"] for line in open(os.path.join(result.path, "result.json"))]
    assert reported[0] == 1 and reported[-1] == 3 and 1 not in reported[1:]  # resumed after epoch 1, not from 0


def test_resume_continues_an_interrupted_experiment_without_redoing_finished_trials(tiny_grid, tmp_path):
    """An experiment left with one trial errored (its server killed, no retries): --resume finishes that trial
    and leaves the finished ones alone."""
    import ray
    from ray import tune

    killed = []

    class KillOneServer(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result["epoch"] == 1 and not killed and str(trial).startswith("dana"):
                killed.append(str(trial))
                ray.kill(ray.get_actor(f"interrupted/{trial}/ParameterServer"))

    grid = load_grid(tiny_grid)
    grid.tune = dict(grid.tune, max_failures=0)
    # one actor per worker: a dana trial cannot borrow (and be named after) a baseline trial's pooled server
    grid.trial = {
        k: ({o: w for o, w in v.items() if o != "num_actors"} if k == "ray" else v) for k, v in grid.trial.items()
    }
    assert get_option(grid.trial, "num_actors") is None
    storage, path = str(tmp_path), os.path.join(str(tmp_path), "interrupted")
    results = make_tuner(grid, storage, "interrupted", callbacks=[KillOneServer()]).fit()
    assert len(results.errors) == 1
    before = load_experiment(path)
    done = set(before.loc[before["finished"], "trial"])
    assert len(done) == 3 and killed[0] not in done
    lines = {t: open(os.path.join(path, t, "result.json")).read() for t in done}

    assert main(["--resume", "--storage", storage, "--name", "interrupted", "--no-report"]) == 0  # its own grid
    after = load_experiment(path)
    assert len(after) == 4 and after["finished"].all()
    for t in done:  # finished trials were not run again
        assert open(os.path.join(path, t, "result.json")).read() == lines[t]


def tensorboard_scalars(folder: str) -> dict[tuple[int, str], float]:
    """(step, tag) -> value of every scalar in ``folder``'s TensorBoard event files (TFRecord framing: length,
    its CRC, the serialized ``Event``, its CRC), read with tensorboardX's own protocol buffers."""
    import glob
    import struct

    from tensorboardX.proto import event_pb2

    scalars = {}
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        data, pos = open(path, "rb").read(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                scalars[event.step, value.tag] = value.simple_value
    return scalars


def test_each_epochs_scalars_land_in_tensorboard_files(experiment):
    """Tune's per-epoch scalars (test error, mean delay, updates/s) in each trial folder's event files, read
    back, equal the trial's result.json rows (to float32)."""
    trials = [f for f in os.listdir(experiment) if os.path.isfile(os.path.join(experiment, f, "result.json"))]
    assert len(trials) == 4
    for trial in trials:
        scalars = tensorboard_scalars(os.path.join(experiment, trial))
        rows = [json.loads(line) for line in open(os.path.join(experiment, trial, "result.json"))]
        for row in (r for r in rows if "epoch" in r):
            for key in ("test_error", "mean_delay", "gradients_per_s"):
                assert scalars[row["epoch"], f"ray/tune/{key}"] == pytest.approx(row[key], rel=1e-6), (trial, key)


def test_missing_data_on_a_node_stops_the_sweep_naming_node_and_path(tmp_path, capsys):
    grid = tmp_path / "cifar.yaml"
    grid.write_text(
        TINY.replace("dataset: digits", f"dataset: cifar10\n  data_dir: {tmp_path / 'nowhere'}")
        .replace("model: cnn", "model: resnet20")
        .replace("  model_options: {channels: 4}\n", "")
    )
    assert main([str(grid), "--storage", str(tmp_path / "results"), "--no-report"]) == 2
    err = capsys.readouterr().err
    assert f"error: {grid}: data_dir: cifar10 needs the directory '{tmp_path}/nowhere/cifar-10-batches-py'" in err
    assert "(on host " in err and "[node " in err
    assert not (tmp_path / "results").exists()  # nothing launched


def test_the_data_check_runs_a_task_only_for_data_sets_with_files_to_check(monkeypatch, tmp_path):
    """The embedded digits have no files: checking them would start a process on every node for nothing."""
    import ray

    from dana_ray.cluster import preflight

    sent = []

    class Recorder:
        def options(self, **_):
            return self

        def remote(self, plugins, dataset, data_dir, options):
            sent.append(dataset)
            return ray.put((None, None))

    monkeypatch.setattr(preflight, "_remote_check", Recorder())
    assert preflight.check_nodes({data_key("digits", None, {})}) == ([], {}) and sent == []
    assert preflight.check_nodes({data_key("digits", None, {}), data_key("cifar10", str(tmp_path), {})}) == ([], {})
    assert sent == ["cifar10"] * len([n for n in ray.nodes() if n["Alive"]])


def test_nodes_whose_copies_of_the_data_differ_are_refused(monkeypatch, ray_session):
    """Two nodes' checks that disagree on the data's shape: the sweep would train on different data."""
    import ray

    from dana_ray.cluster import preflight
    from dana_ray.data import DataShape

    answers = iter([DataShape(100, 40, 10, (3, 32, 32)), DataShape(90, 40, 10, (3, 32, 32))])

    class TwoNodes:
        def options(self, **_):
            return self

        def remote(self, *_):
            return ray.put((None, next(answers)))

    node = next(n for n in ray.nodes() if n["Alive"])
    monkeypatch.setattr(ray, "nodes", lambda: [node, dict(node, NodeManagerAddress="10.0.0.2")])
    monkeypatch.setattr(preflight, "_remote_check", TwoNodes())
    problems, _ = preflight.check_nodes({data_key("cifar10", "/data", {})})
    assert problems == [
        f"data_dir: cifar10 under '/data' differs between nodes: {node['NodeManagerAddress']} has "
        "100/40 train/test examples of 10 classes, shape [3, 32, 32], 10.0.0.2 has 90/40 train/test "
        "examples of 10 classes, shape [3, 32, 32]"
    ]


def test_resume_refuses_a_grid_that_differs_from_the_one_the_experiment_ran(tiny_grid, experiment, tmp_path, capsys):
    edited = tmp_path / "tiny.yaml"
    edited.write_text(open(tiny_grid).read().replace("seed: [0, 1]", "seed: [0, 1, 2]"))
    storage, name = os.path.dirname(experiment), os.path.basename(experiment)
    assert main([str(edited), "--resume", "--storage", storage, "--name", name, "--no-report"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "grid.seed: [0, 1] -> [0, 1, 2]" in err and "another --name" in err
    # the experiment folder holds the grid it ran, as a grid file
    assert load_grid(os.path.join(experiment, "grid.yaml")).axes["seed"] == [0, 1]


def test_resume_of_an_experiment_an_older_layout_wrote_is_refused_in_one_line(tiny_grid, tmp_path, capsys):
    """Tune saves a run's callbacks by the names of their classes; an experiment written before the package's
    modules moved names ones that no longer exist (``dana_ray.console``, ...). Tune would fail with a
    traceback after Ray started; the sweep refuses it first, saying where its finished trials can be read."""
    old = tmp_path / "results" / "old"
    old.mkdir(parents=True)
    (old / "grid.yaml").write_text(open(tiny_grid).read())
    (old / "tuner.pkl").write_bytes(b"cdana_ray.console\nSweepConsole\n.")  # pickle: the old layout's class
    assert main(["--resume", "--storage", str(tmp_path / "results"), "--name", "old"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: --resume: {old} was written by another version of dana_ray, whose saved run this one "
        f"cannot read (No module named 'dana_ray.console'); its finished trials are in python -m "
        f"dana_ray.report {old}, and the rest can run as a new experiment (another --name)\n"
    )


def test_an_unwritable_storage_is_one_line_before_anything_starts(tiny_grid, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main([tiny_grid, "--storage", str(blocker / "results")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --storage: cannot write to '{blocker}/results'") and len(err.splitlines()) == 1
    # a folder that refuses writes even to root (os.access says yes there): a write is tried, nothing is left
    if os.path.isdir("/proc"):
        assert main([tiny_grid, "--storage", "/proc/dana_ray-results"]) == 2
        assert capsys.readouterr().err.startswith("error: --storage: cannot write to '/proc/dana_ray-results'")
    assert (
        main(
            [
                tiny_grid,
                "--storage",
                str(tmp_path / "fine"),
                "--smoke-test",
                "--only",
                "seed=0",
                "--only",
                "algorithm=baseline",
                "--no-report",
            ]
        )
        == 0
    )
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".dana_ray-write-check")]


@pytest.mark.slow  # 34 s; the default run resumes an interrupted sweep, and tests/test_lock.py takes a dead lock
def test_a_killed_driver_resumes_without_redoing_finished_trials(tiny_grid, tmp_path):
    """``kill -9`` of the sweep's driver process once a trial has finished, then ``--resume``: the finished
    trials are not run again (their result files are untouched) and the report is complete."""
    import signal
    import subprocess
    import sys
    import time

    grid = tmp_path / "killed.yaml"
    grid.write_text(TINY.replace("  max_failures: 1", "  max_failures: 1\n  max_concurrent_trials: 1"))
    storage, path = tmp_path / "results", tmp_path / "results" / "killed"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dana_ray.sweep",
            str(grid),
            "--storage",
            str(storage),
            "--name",
            "killed",
            "--no-report",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def finished() -> set[str]:
        done = set()
        for result in path.glob("*/result.json"):
            lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
            if lines and lines[-1].get("epoch") == 2:
                done.add(result.parent.name)
        return done

    deadline = time.monotonic() + 180
    while not finished() and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # polling a condition, bounded
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    done = finished()
    assert done and len(done) < 4, "the driver was killed once 1-3 of the 4 trials had finished"
    before = {t: (path / t / "result.json").read_text() for t in done}

    code = main([str(grid), "--resume", "--storage", str(storage), "--name", "killed", "--no-report"])
    after = load_experiment(str(path))
    # what a failure needs to be understood (it failed once in a full CI run and never alone): each trial's
    # state and Tune's error files
    errors = {f.parent.name: f.read_text()[-600:] for f in path.glob("*/error.txt")}
    state = after[["trial", "epochs_done", "finished"]].to_dict("records") if len(after) else []
    assert code == 0 and len(after) == 4 and after["finished"].all(), (code, done, state, errors)
    for t in done:
        assert (path / t / "result.json").read_text() == before[t]


FAILING_MODEL = """
import torch
from torch import nn
from dana_ray.models import register_model

class Failing(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        if x.device.type != "meta":
            raise RuntimeError("this model fails on real data")
        return self.linear(x.flatten(1))

@register_model("failing")
def failing(num_classes, in_channels):
    return Failing(num_classes)
"""


def test_a_sweep_whose_trials_fail_exits_1_counting_them_from_the_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "failing_model.py").write_text(FAILING_MODEL)
    monkeypatch.chdir(tmp_path)
    grid = tmp_path / "failing.yaml"
    grid.write_text(
        TINY.replace("model: cnn", "model: failing\n  plugins: [failing_model.py]")
        .replace("  model_options: {channels: 4}\n", "")
        .replace("max_failures: 1", "max_failures: 0")
        + "  executor: local\n"
    )
    storage = tmp_path / "results"
    assert main([str(grid), "--storage", str(storage), "--name", "failing"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"error: 4 of 4 trials did not finish; see {storage / 'failing'}; retry them with: "
        f"python -m dana_ray.sweep --resume --name failing --storage {storage}"
    )
    assert not (storage / "failing" / ".sweep.lock").exists()


def test_a_second_sweep_on_an_experiment_in_use_is_refused_before_ray_starts(tiny_grid, tmp_path, monkeypatch, capsys):
    import ray

    from dana_ray.sweep.lock import claim

    held = claim(str(tmp_path / "busy"))  # as a running driver holds it
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray must not start"))
    try:
        assert main([tiny_grid, "--storage", str(tmp_path), "--name", "busy"]) == 2
    finally:
        held.release()
    err = capsys.readouterr().err
    assert err == (
        f"error: --name: {tmp_path / 'busy'} is in use by another sweep (pid {os.getpid()} on host "
        f"{socket.gethostname()}); wait for it to end, or choose another --name\n"
    )


def test_the_outcome_is_read_from_the_experiment_not_from_tunes_errors(tmp_path, capsys):
    """0 only when every trial of the grid finished; a broken trial counts as not finished; an interrupt is
    130, with where the experiment stands and the line that continues it."""
    import pandas as pd

    from dana_ray.sweep.cli import _interrupted, _outcome

    grid = load_grid(
        os.path.join(os.path.dirname(__file__), "..", "tune_configs", "quickstart.yaml"),
        only={"algorithm": ["baseline"]},
    )
    frame = lambda finished, broken: pd.DataFrame({"finished": finished, "broken": broken})
    assert _outcome(grid, str(tmp_path), str(tmp_path / "x"), frame([True] * 3, [""] * 3)) == 0
    assert _outcome(grid, str(tmp_path), str(tmp_path / "x"), frame([True, True, False], ["", "", "p: empty"])) == 1
    assert "error: 1 of 3 trials did not finish, 1 with files that cannot be read;" in capsys.readouterr().err
    assert _outcome(grid, str(tmp_path), str(tmp_path / "x"), None) == 1  # the folder could not be read
    assert _interrupted(grid, str(tmp_path), str(tmp_path / "x"), "SIGTERM") == 130  # nothing written yet
    assert capsys.readouterr().err.splitlines()[-2:] == [
        f"interrupted (SIGTERM): 0 of 3 trials finished; results in {tmp_path / 'x'}",
        f"continue with: python -m dana_ray.sweep --resume --name x --storage {tmp_path}",
    ]

    from types import SimpleNamespace

    from dana_ray.sweep.cli import _finished_in

    # storage this process cannot list (s3://): the outcome from Tune's results
    epochs = grid.trial["epochs"]
    results = [
        SimpleNamespace(error=None, metrics={"epoch": epochs}),
        SimpleNamespace(error=None, metrics={"epoch": 1}),
        SimpleNamespace(error=RuntimeError("x"), metrics={"epoch": epochs}),
        SimpleNamespace(error=None, metrics={"epoch": 1, "diverged": True}),
    ]
    assert _finished_in(results, grid)["finished"].tolist() == [True, False, False, True]


@pytest.mark.slow  # the default run's Ctrl-C test is test_sweep_outcomes.py's, on the quickstart
def test_an_interrupted_sweep_exits_130_quietly_with_the_line_that_resumes_it(tiny_grid, tmp_path):
    """SIGINT to the driver once a trial has reported: exit 130, the exact --resume line, no traceback or
    C++ stack; that line then finishes the experiment (exit 0)."""
    import shlex
    import signal
    import subprocess
    import sys
    import time

    grid = tmp_path / "interrupted.yaml"
    grid.write_text(
        TINY.replace("epochs: 2", "epochs: 4").replace(
            "  max_failures: 1", "  max_failures: 1\n  max_concurrent_trials: 1"
        )
    )
    storage, path = tmp_path / "results", tmp_path / "results" / "interrupted"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dana_ray.sweep",
            str(grid),
            "--storage",
            str(storage),
            "--name",
            "interrupted",
            "--only",
            "seed=0",
            "--no-report",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    while (
        not any(p.stat().st_size for p in path.glob("*/result.json"))
        and driver.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)  # polling a condition, bounded
    driver.send_signal(signal.SIGINT)
    out, err = driver.communicate(timeout=180)
    assert driver.returncode == 130, err
    status, last = err.strip().splitlines()[-2:]
    assert status.startswith("interrupted (SIGINT): ") and " trials finished, " in status
    resume = last.split("continue with: ", 1)[1]
    assert resume == f"python -m dana_ray.sweep --resume --name interrupted --storage {storage}"
    for noise in ("Traceback", "Check failed", "Exception ignored", "Tuner.restore("):
        assert noise not in err and noise not in out, noise
    assert not (path / ".sweep.lock").exists()

    assert main(shlex.split(resume)[3:] + ["--no-report"]) == 0
    assert load_experiment(str(path))["finished"].all()


def test_an_unreadable_checkpoint_falls_back_to_the_one_before_or_to_the_start(tmp_path):
    import torch
    from ray import tune

    from dana_ray.sweep.checkpoints import PREVIOUS_FILE, STATE_FILE, keep_previous, readable_state

    for k in range(2):
        (tmp_path / f"checkpoint_00000{k}").mkdir()
        torch.save({"epoch": k + 1, "history": [], "master": {}}, tmp_path / f"checkpoint_00000{k}" / STATE_FILE)
    keep_previous(tune.Checkpoint(str(tmp_path / "checkpoint_000000")))  # as before checkpoint 1 is reported
    (tmp_path / "checkpoint_000000" / STATE_FILE).unlink()  # as Tune deletes it once checkpoint 1 is registered
    latest = tmp_path / "checkpoint_000001"
    state, note = readable_state(tune.Checkpoint(str(latest)))
    assert state["epoch"] == 2 and note is None

    (latest / STATE_FILE).write_bytes((latest / STATE_FILE).read_bytes()[:100])  # truncated
    state, note = readable_state(tune.Checkpoint(str(latest)))
    assert state["epoch"] == 1
    assert note.startswith(f"checkpoint {latest / STATE_FILE} (") and note.endswith(
        f"cannot be read; resumed from {tmp_path / PREVIOUS_FILE} (epoch 1)"
    )
    torch.save({"not": "a trial state"}, tmp_path / PREVIOUS_FILE)  # overwritten
    state, note = readable_state(tune.Checkpoint(str(latest)))
    assert state is None and note.endswith("and no earlier one can; the trial starts again from its beginning")


@pytest.mark.slow  # 21 s; the default run: the fallback itself above, and tests/test_sweep_outcomes.py's histories
def test_a_trial_whose_latest_checkpoint_is_corrupt_resumes_from_the_one_before(tiny_grid, tmp_path, capsys, notes):
    """The epoch-2 checkpoint overwritten with garbage, then the trial's server killed: the trial resumes
    from epoch 1 (never retrying the corrupt file), says so in one line on the driver, and ends with the
    undisturbed run's params_sha256."""
    import ray
    from ray import tune

    from dana_ray.sweep.checkpoints import STATE_FILE

    corrupted = []

    class CorruptThenKill(tune.Callback):
        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            if not corrupted and os.path.basename(checkpoint.path) == "checkpoint_000001":
                with open(os.path.join(checkpoint.path, STATE_FILE), "wb") as f:
                    f.write(b"not a checkpoint")
                corrupted.append(os.path.join(checkpoint.path, STATE_FILE))
                ray.kill(ray.get_actor(f"corrupt/{trial}/ParameterServer"))

    grid = load_grid(tiny_grid)
    grid.axes = dict(grid.axes, algorithm=["dana"], seed=[0])
    grid.trial = dict(grid.trial, epochs=4)
    results = make_tuner(grid, str(tmp_path), "corrupt", callbacks=[CorruptThenKill()]).fit()
    assert corrupted and not results.errors
    assert results[0].metrics["params_sha256"] == run(grid.trials()[0])["params_sha256"]
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and f"checkpoint {corrupted[0]} (UnpicklingError" in notes[0], notes
    assert notes[0].endswith("/previous_trial_state.pt (epoch 1)")
    reported = [json.loads(line) for line in open(os.path.join(results[0].path, "result.json"))]
    assert [r["epoch"] for r in reported] == [1, 2, 3, 4]  # one try: the abandoned epoch 2 is gone
    assert [r["epoch"] for r in reported if r["checkpoint_note"]] == [2]  # from epoch 1's state


def test_the_sweep_writes_its_report_into_the_experiment_folder(tiny_grid, tmp_path, capsys):
    assert (
        main([tiny_grid, "--executor", "local", "--storage", str(tmp_path), "--name", "reported", "--only", "seed=0"])
        == 0
    )
    out = capsys.readouterr().out
    folder = tmp_path / "reported" / "report"
    line = next(line for line in out.splitlines() if line.startswith("report written into "))
    assert line.startswith(f"report written into {folder}: summary.csv, summary.tex, summary.md")
    for name in (
        "summary.csv",
        "summary.tex",
        "summary.md",
        "error_vs_workers.png",
        "curves_largest_n.png",
        "delays.csv",
        "time_to_target.csv",
        "error_vs_time_largest_n.png",
    ):
        assert name in line and (folder / name).stat().st_size > 0, name
    assert "| 2 | dana |" in (folder / "summary.md").read_text()
    assert "cnn on digits, round-robin: test error % (mean ± std over seeds)" in out  # the compact tables
    assert "time to test error <= " in out


def test_the_smallest_grid_a_newcomer_writes_is_sized_to_a_2_cpu_cluster_and_finishes(tmp_path, capsys):
    """The two-line grid with every resource at its default (3.25 CPUs a trial on the Ray executor) on this
    2-CPU instance, which the test session started (it cannot grow): sized in one line, run, exit 0, in well
    under 30 s; with the same settings given by hand, refused in one line before Tune starts."""
    import time

    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "trial: {model: cnn, dataset: digits, epochs: 1}\n"
        "grid: {algorithm: [dana], num_workers: [2], schedule: [round-robin], seed: [0]}\n"
    )
    started = time.monotonic()
    assert main([str(grid), "--storage", str(tmp_path), "--name", "newcomer", "--no-report"]) == 0
    assert time.monotonic() - started < 30
    out = capsys.readouterr().out
    assert (
        "resources: sized to this cluster (2 CPUs and 0 GPUs, which cannot grow): num_actors 1, server_cpus "
        "0.875, cpus_per_actor 0.875 (set them in the grid's trial: section to choose)"
    ) in out
    newcomer = load_experiment(str(tmp_path / "newcomer"))
    assert newcomer["finished"].all()
    assert newcomer["params_sha256"].str.len().eq(64).all()  # the last row has it, with no checkpoint after it

    grid.write_text(
        "trial: {model: cnn, dataset: digits, epochs: 1, ray: {num_actors: 2}, compute: {cpus_per_actor: 1}}\n"
        "grid: {algorithm: [dana], num_workers: [2], schedule: [round-robin], seed: [0]}\n"
    )
    assert main([str(grid), "--storage", str(tmp_path), "--name", "refused", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(
            f"error: {grid}: resources: a trial of N=2 needs 3.25 CPUs and 0 GPUs (trial_cpus 0.25 + "
            f"server_cpus 1 + 2 actors x 1 CPU), and this cluster has 2 CPUs"
        )
        and len(err.splitlines()) == 1
    )
    assert not (tmp_path / "refused").exists()
