"""Plug-ins from files outside the package: the rule, data set, model, executor and grid under
``examples/plugins/`` (the files the docs' guide shows), run for real through the local executor, the Ray
executor and a smoke sweep; and the engine naming no particular rule."""

from __future__ import annotations

import os
import re

import pytest
import torch
from helpers import trial_dict

from dana_ray.trial import run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = ("my_rule.py", "my_data.py", "my_model.py", "my_grid.yaml")


EXAMPLES = os.path.join(REPO, "examples", "plugins")


def example_files() -> dict[str, str]:
    """The files under ``examples/plugins/``, by name (``docs/guides/extending.md`` includes each)."""
    return {name: open(os.path.join(EXAMPLES, name)).read() for name in sorted(os.listdir(EXAMPLES))}


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    """A copy of the examples' folder: the tests run them from elsewhere, as a user's own folder."""
    folder = tmp_path_factory.mktemp("plugins")
    for name, code in example_files().items():
        (folder / name).write_text(code)
    return folder


def config(folder, **change):
    base = trial_dict(
        plugins=[str(folder / f) for f in FILES[:3]],
        model="mlp",
        dataset="blobs",
        algorithm="staleness-aware",
        num_workers=4,
        schedule="gamma",
        epochs=2,
        batch_size=32,
        lr=0.05,
        lr_decay_epochs=[],
        cpu_threads=1,
        cpus_per_actor=0.25,
        server_cpus=0.25,
    )
    return trial_dict(base, **change)


def test_the_guide_shows_each_file_and_each_is_short():
    files = example_files()
    guide = open(os.path.join(REPO, "docs", "guides", "extending.md")).read()
    assert all(f"```{{literalinclude}} ../../examples/plugins/{name}" in guide for name in files)
    assert set(files) == {*FILES, "my_executor.py", "my_local_rule.py"}
    assert all(len(files[f].splitlines()) <= 35 for f in FILES[:3])  # "one file" of about 30 lines


def test_a_rule_data_set_and_model_of_ones_own_train_locally(plugin_dir):
    result = run(config(plugin_dir))
    assert not result["diverged"] and result["test_error"] < 30  # 4 classes: chance is 75
    assert result["num_params"] == 16 * 64 + 64 + 2 * 64 + 64 * 64 + 64 + 2 * 64 + 64 * 4 + 4


def test_the_plugin_rule_keeps_the_laws_and_sees_the_delay(plugin_dir):
    from dana_ray.algorithms import make_algorithm
    from dana_ray.core.plugins import load_plugins
    from dana_ray.testing import check_laws

    load_plugins([str(plugin_dir / "my_rule.py")])
    check_laws("staleness-aware")
    rule = make_algorithm("staleness-aware", torch.zeros(2, dtype=torch.float64), 4, lr=0.1, momentum=0.0)
    rule.apply(0, torch.ones(2, dtype=torch.float64), delay=4)  # damped by 1/4
    torch.testing.assert_close(rule.params, torch.full((2,), -0.025, dtype=torch.float64))


def test_the_plugin_rule_with_local_steps_keeps_the_laws_and_trains(plugin_dir):
    """The example rule with a worker side (my_local_rule.py): its laws, its H = 4 steps per job (a quarter of
    the jobs per epoch), learning the blobs."""
    from dana_ray.core.plugins import load_plugins
    from dana_ray.testing import check_laws

    load_plugins([str(plugin_dir / "my_local_rule.py")])
    check_laws("damped-local-sgd")
    rows: list = []
    cfg = config(
        plugin_dir,
        plugins=config(plugin_dir)["plugins"] + [str(plugin_dir / "my_local_rule.py")],
        algorithm="damped-local-sgd",
        epochs=3,
    )
    result = run(cfg, callback=rows.append)
    assert rows[0]["gradients"] == 2000 // 32 // 4 and result["test_error"] < 30, result["test_error"]


@pytest.mark.usefixtures("ray_session")
def test_the_plugin_rule_with_local_steps_gives_the_local_sha_on_ray(plugin_dir):
    cfg = config(
        plugin_dir,
        plugins=config(plugin_dir)["plugins"] + [str(plugin_dir / "my_local_rule.py")],
        algorithm="damped-local-sgd",
        num_actors=2,
        epochs=1,
    )
    assert run(cfg, executor="ray")["params_sha256"] == run(cfg)["params_sha256"]


@pytest.mark.usefixtures("ray_session")
def test_plugins_reach_every_ray_actor_and_give_the_local_sha(plugin_dir):
    cfg = config(plugin_dir, num_actors=2, epochs=1)
    assert run(cfg, executor="ray")["params_sha256"] == run(cfg)["params_sha256"]


@pytest.mark.usefixtures("ray_session")
def test_plugins_in_a_smoke_sweep(plugin_dir, tmp_path, monkeypatch):
    """The example grid, from the folder holding the files (its plugins: are relative paths)."""
    from dana_ray.report import load_experiment
    from dana_ray.sweep import main

    monkeypatch.chdir(plugin_dir)
    assert main(["my_grid.yaml", "--smoke-test", "--storage", str(tmp_path), "--name", "plug", "--no-report"]) == 0
    trials = load_experiment(str(tmp_path / "plug"))
    assert sorted(zip(trials["algorithm"], trials["num_workers"])) == [
        ("baseline", 1),
        ("dana", 8),
        ("staleness-aware", 8),
    ]
    assert trials["finished"].all() and set(trials["dataset"]) == {"blobs"}


def test_no_engine_config_grid_or_report_module_names_a_particular_rule():
    """The engine, config, grid and report ask the rule (its declared attributes), never its name."""
    from dana_ray.algorithms import BUILTIN_ALGORITHMS

    modules = [
        os.path.relpath(os.path.join(root, f), REPO)
        for package in ("engine", "config", "experiments", "report")
        for root, _, files in os.walk(os.path.join(REPO, "dana_ray", package))
        for f in files
        if f.endswith(".py")
    ]
    assert len(modules) > 25
    for module in modules:
        text = open(os.path.join(REPO, module)).read()
        for name in BUILTIN_ALGORITHMS:
            assert not re.search(rf"""["'`]{re.escape(name)}["'`]""", text), f"{module} names {name!r}"
            if name != "baseline":  # also the English word for the single-worker reference
                assert not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text.replace("dana_ray", "")), (
                    f"{module} mentions {name!r}"
                )


def test_an_executor_of_ones_own_is_one_file_and_gives_the_local_numbers(plugin_dir, tmp_path, capsys):
    """The example threaded executor (my_executor.py): accepted by trial.run, the trial CLI and a grid by name
    once its file is among the plug-ins; the same params_sha256 as the local executor; its resources and
    arrival declared."""
    from dana_ray.cluster.resources import trial_need
    from dana_ray.config.executors import EXECUTORS
    from dana_ray.experiments.grid import load_grid
    from dana_ray.trial import main

    mine = str(plugin_dir / "my_executor.py")
    base = trial_dict(
        model="cnn",
        model_options={"channels": 4},
        dataset="digits",
        algorithm="dana",
        num_workers=4,
        epochs=1,
        batch_size=32,
        lr=0.05,
        lr_decay_epochs=[],
        cpu_threads=1,
        max_steps_per_epoch=30,
    )
    threaded = run(dict(base, plugins=[mine], threads={"num_threads": 2}), executor="threads")
    assert threaded["params_sha256"] == run(base)["params_sha256"]
    assert (
        "threads" in EXECUTORS and trial_need({"cpus_per_actor": 0.5, "num_threads": 2}, 4, "threads", 0.25)[0] == 1.0
    )
    with pytest.raises(ValueError, match=r"executor: 'threads' does not keep worker-side state"):
        run(dict(base, plugins=[mine], algorithm="dana-slim"), executor="threads")
    assert (
        main(
            [
                "--plugins",
                mine,
                "--executor",
                "threads",
                "--algorithm",
                "asgd",
                "--num-workers",
                "2",
                "--epochs",
                "1",
                "--model-options",
                '{"channels": 4}',
                "--quiet",
            ]
        )
        == 0
    )
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        f"trial: {{plugins: [{mine}], model: cnn, dataset: digits, epochs: 1}}\n"
        f"grid: {{algorithm: [dana], num_workers: [2], schedule: [arrival], seed: [0]}}\n"
        f"tune: {{executor: threads}}\n"
    )
    assert load_grid(str(grid)).tune["executor"] == "threads"  # and it takes the arrival order
    grid.write_text(grid.read_text().replace("threads", "nowhere"))
    with pytest.raises(ValueError, match=r"tune.executor: unknown name 'nowhere'; allowed: local, ray, threads"):
        load_grid(str(grid))
