"""Bad input, generated: valid grids and trial flags mutated field by field (wrong types, out-of-range values,
unknown names). Whatever is refused is refused as one line on stderr with exit code 2, before Ray starts;
nothing raises a traceback. Mutations that happen to be valid are skipped (and counted)."""

from __future__ import annotations

import copy
import dataclasses
import re

import pytest
import yaml

from dana_ray.config import SECTIONS, TrialConfig
from dana_ray.experiments.grid import GridError, load_grid

POOL = ["eight", -3, 1.5, True, None, [], {}, {"bogus": 1}, [-1], "nonexistent", float("nan"), 10**12]

BASE = {
    "description": "fuzz base",
    "trial": {
        "model": "cnn",
        "model_options": {"channels": 4},
        "dataset": "digits",
        "epochs": 1,
        "batch_size": 64,
        "lr_decay_epochs": [1],
        "schedule_options": {"shape": 100.0, "slow_fraction": 0.5, "slow_factor": 2.0},
        "algorithm_options": {"dc_lambda": 0.1},
        "compute": {"cpu_threads": 1, "cpus_per_actor": 0.25},
        "ray": {"num_actors": 1},
    },
    "grid": {"algorithm": ["dc-asgd"], "num_workers": [2], "schedule": ["gamma"], "seed": [0]},
    "tune": {"max_failures": 1, "trial_cpus": 0.25, "checkpoint_every": 1},
}


def mutations():
    """(label, mutated grid): every value of the pool at every site."""
    sites = [("trial", f.name) for f in dataclasses.fields(TrialConfig)]
    sites += [
        ("trial", options, key)
        for options in ("model_options", "schedule_options", "algorithm_options")
        for key in BASE["trial"][options]
    ]
    sites += [("trial", section, option) for section, spec in SECTIONS.items() for option in spec.options]
    sites += [("grid", axis) for axis in BASE["grid"]] + [("grid", axis, 0) for axis in BASE["grid"]]
    sites += [("tune", key) for key in ("max_failures", "trial_cpus", "checkpoint_every", "max_concurrent_trials")]
    sites += [("trial",), ("grid",), ("paper_table",)]
    for site in sites:
        for value in POOL:
            raw = copy.deepcopy(BASE)
            target = raw
            for key in site[:-1]:
                target = target[key]
            target[site[-1]] = copy.deepcopy(value)
            yield f"{'.'.join(map(str, site))}={value!r}", raw


def test_mutated_grids_are_refused_in_one_line_or_accepted(tmp_path, monkeypatch, capsys):
    import ray

    from dana_ray.sweep import main

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray must not start for a bad grid"))
    refused = accepted = 0
    for label, raw in mutations():
        path = tmp_path / "fuzz.yaml"
        path.write_text(yaml.safe_dump(raw))
        try:
            load_grid(str(path))
        except GridError:
            pass
        except Exception as error:
            pytest.fail(f"{label}: {type(error).__name__} instead of a one-line refusal: {error}")
        else:
            accepted += 1
            continue
        capsys.readouterr()
        assert main([str(path), "--storage", str(tmp_path / "results")]) == 2, label
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, (label, err)
        refused += 1
    assert refused > 300 and accepted < refused / 4, (refused, accepted)


FLAG_VALUES = ["eight", "-3", "1.5", "nan", "", "nonexistent", "{}", "[]", '{"bogus": 1}', "1e12"]


def test_mutated_trial_flags_are_refused_in_one_line_or_accepted(monkeypatch, capsys):
    import dana_ray.trial.cli as trial

    class Accepted(Exception):
        pass

    def accepted_run(*args, **kwargs):
        raise Accepted

    monkeypatch.setattr(trial, "run", accepted_run)
    flags = [
        a.option_strings[0]
        for a in trial._parser()._actions
        if a.option_strings and a.nargs != 0 and a.option_strings[0] not in ("-h", "--executor")
    ]
    refused = 0
    for flag in flags:
        for value in FLAG_VALUES:
            capsys.readouterr()
            try:
                code = trial.main([flag, value, "--epochs", "1", "--quiet"])
            except SystemExit as stop:
                code = stop.code
            captured = capsys.readouterr()
            if code == 1 and "error:" in captured.err:  # a run was reached: the input was valid
                continue
            assert code == 2, (flag, value, code, captured.err)
            assert captured.err.startswith("error: ") and len(captured.err.splitlines()) == 1, (
                flag,
                value,
                captured.err,
            )
            refused += 1
    assert refused > 100


DATA_GRID = {
    "description": "data fuzz",
    "trial": {
        "model": "cnn",
        "model_options": {"channels": 4},
        "dataset": "digits",
        "epochs": 1,
        "batch_size": 64,
        "compute": {"cpu_threads": 1, "cpus_per_actor": 0.25},
        "ray": {"num_actors": 1, "server_cpus": 0.25},
    },
    "grid": {"algorithm": ["dana"], "num_workers": [2], "schedule": ["round-robin"], "seed": [0]},
    "tune": {"trial_cpus": 0.25, "executor": "local"},
}

PLUGIN_DATA = """
import numpy as np
from dana_ray.core.checks import integer
from dana_ray.data import array_dataset, register_dataset
from dana_ray.core.registry import Option

@register_dataset("fuzzed", options={"label": Option(0, integer(-100)), "classes": Option(3, integer(1)),
                                     "side": Option(0, integer(0))})
def fuzzed(data_dir, label=0, classes=3, side=0):
    x = np.zeros((40, 5) if side == 0 else (40, 1, side, side), np.float32)  # side 0: feature vectors
    y = np.arange(40) % classes
    y[7] = label
    return array_dataset(x, y, x[:10], y[:10], num_classes=classes)
"""


def _refused_before_launch(main, grid: dict, tmp_path, capsys) -> str:
    path = tmp_path / "data-fuzz.yaml"
    path.write_text(yaml.safe_dump(grid))
    capsys.readouterr()
    storage = tmp_path / "results"
    assert main([str(path), "--storage", str(storage)]) == 2, grid["trial"]
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not storage.exists(), "nothing is launched, and the experiment folder is not left behind"
    return err


def test_data_dependent_values_are_refused_in_one_line_before_ray_starts(tmp_path, monkeypatch, capsys):
    """What only the data decides, for data sets with no files: the batch size against the training set, and
    a plug-in's arrays (a label beyond the class count, a negative one) are refused before Ray starts."""
    import ray

    from dana_ray.sweep import main

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray must not start for bad data"))
    for batch_size in (1438, 10**8):
        grid = copy.deepcopy(DATA_GRID)
        grid["trial"]["batch_size"] = batch_size
        err = _refused_before_launch(main, grid, tmp_path, capsys)
        assert f"batch_size: {batch_size} is larger than the digits training set (1437 examples)" in err
    (tmp_path / "fuzzed_data.py").write_text(PLUGIN_DATA)
    monkeypatch.chdir(tmp_path)
    for options, message in (
        ({"label": 57, "classes": 3}, "label 57 is outside [0, 3)"),
        ({"label": -3}, "label -3 is outside [0, 3)"),
    ):
        grid = copy.deepcopy(DATA_GRID)
        grid["trial"].update(plugins=["fuzzed_data.py"], dataset="fuzzed", dataset_options=options, batch_size=8)
        err = _refused_before_launch(main, grid, tmp_path, capsys)
        assert "dataset 'fuzzed' cannot be built: y_train: " + message in err, err
    # the data's shape against the model: features for a convolutional net, images below the model's
    # minimum side, and a batch that leaves BatchNorm one value per channel
    for model, side, batch_size, message in (
        (
            "cnn",
            0,
            8,
            r"model: 'cnn' cannot take dataset 'fuzzed'.s examples of shape \[5\] in batches of 8 "
            r"\(.*conv2d",
        ),
        (
            "resnet50",
            16,
            8,
            r"model: 'resnet50' needs images of at least 32x32 pixels \(its total stride\), "
            r"and dataset 'fuzzed' gives 16x16",
        ),
        (
            "cnn",
            2,
            1,
            r"model: 'cnn' cannot take .* in batches of 1 \(ValueError: Expected more than 1 value "
            r"per channel when training",
        ),
    ):
        grid = copy.deepcopy(DATA_GRID)
        grid["trial"].update(
            plugins=["fuzzed_data.py"],
            dataset="fuzzed",
            dataset_options={"side": side},
            model=model,
            model_options={},
            batch_size=batch_size,
        )
        err = _refused_before_launch(main, grid, tmp_path, capsys)
        assert re.search(message, err), (model, side, err)
    grid = copy.deepcopy(DATA_GRID)  # and a shape that fits runs the checks through
    grid["trial"].update(plugins=["fuzzed_data.py"], dataset="fuzzed", dataset_options={"side": 4}, batch_size=2)
    from dana_ray.config import TrialConfig
    from dana_ray.experiments.fits import check_fits, generated_shapes

    configs = [TrialConfig.from_dict(dict(grid["trial"], algorithm="dana", num_workers=2, seed=0))]
    check_fits(configs, generated_shapes(configs))


def test_arrays_data_is_checked_on_every_node_before_launch(tmp_path, capsys, ray_session):
    """``arrays`` data is read where trials run: each live node's preflight refuses bad contents in one line
    naming the file, exit 2, before any trial launches."""
    import numpy as np
    from fakedata import make_arrays_npz
    from test_data import BAD_ARRAYS

    from dana_ray.sweep import main

    good = np.load(make_arrays_npz(str(tmp_path / "good")) + "/data.npz")
    for k, (problem, (change, message)) in enumerate(sorted(BAD_ARRAYS.items())):
        folder = make_arrays_npz(str(tmp_path / f"bad{k}"), **change({key: good[key] for key in good.files}))
        grid = copy.deepcopy(DATA_GRID)
        grid["trial"].update(dataset="arrays", data_dir=folder)
        err = _refused_before_launch(main, grid, tmp_path, capsys)
        assert f"data_dir: arrays file '{folder}/data.npz'" in err and "[node " in err, (problem, err)
        assert re.search(message, err), (problem, err)
    # good files, read on the nodes: their shape (from the nodes) against the trial's batch size and model
    folder = make_arrays_npz(str(tmp_path / "good"))
    features = make_arrays_npz(
        str(tmp_path / "features"), x_train=good["x_train"].reshape(1437, 64), x_test=good["x_test"].reshape(360, 64)
    )
    for data_dir, change, message in (
        (folder, {"batch_size": 1500}, "batch_size: 1500 is larger than the arrays training set (1437 examples)"),
        (features, {}, "model: 'cnn' cannot take dataset 'arrays''s examples of shape [64] in batches of 64"),
    ):
        grid = copy.deepcopy(DATA_GRID)
        grid["trial"].update(dataset="arrays", data_dir=data_dir, **change)
        err = _refused_before_launch(main, grid, tmp_path, capsys)
        assert message in err, err
