"""Grid files: expansion, the paper tables' cells, validation before anything starts."""

from __future__ import annotations

import os

import pytest

import dana_ray
from dana_ray.algorithms import BUILTIN_ALGORITHMS
from dana_ray.experiments.folder import cell_label, parse_cell
from dana_ray.experiments.grid import PACKAGED_GRIDS, GridError, grid_names, load_grid, resolve, trial_from_tune
from dana_ray.report import PAPER_MODEL, paper_rows, paper_tables
from dana_ray.sweep import main


def test_quickstart_grid():
    grid = load_grid("quickstart")
    trials = grid.trials()
    rules = grid.axes["algorithm"]
    assert len(trials) == 3 + (len(rules) - 1) * 4 * 3  # the baseline once per seed; the rest x 4 N x 3 seeds
    baseline = [t for t in trials if t["algorithm"] == "baseline"]
    assert [t["num_workers"] for t in baseline] == [1, 1, 1] and [t["seed"] for t in baseline] == [0, 1, 2]
    paper = paper_tables()
    table3 = set(paper.loc[paper["table"] == 3, "algorithm"])  # the round-robin table's rows are all there
    assert {paper_rows()[a] for a in rules if a in paper_rows()} == table3
    assert {t["ray"]["num_actors"] for t in trials} == {1} and {t["num_workers"] for t in trials} == {1, 2, 4, 8, 16}


def test_a_grid_of_two_lines_runs_round_robin_with_seed_0(tmp_path):
    """The README's two-line grid: the axes it leaves out take one trial's defaults."""
    path = tmp_path / "two.yaml"
    path.write_text("trial: {epochs: 3}\ngrid: {algorithm: [asgd, dana], num_workers: [8]}\n")
    grid = load_grid(str(path))
    assert grid.axes["schedule"] == ["round-robin"] and grid.axes["seed"] == [0]
    assert [(t["algorithm"], t["num_workers"], t["schedule"], t["seed"]) for t in grid.trials()] == [
        ("asgd", 8, "round-robin", 0),
        ("dana", 8, "round-robin", 0),
    ]
    with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")) as f:
        assert "trial: {epochs: 3}\ngrid: {algorithm: [asgd, dana], num_workers: [8]}\n" in f.read()


#: The rules of 2022-2025, compared in recent.yaml (the other grids predate them).
RECENT = {"delay-adaptive", "ringmaster", "diloco", "async-diloco"}


def test_heterogeneous_grid_compares_every_rule_with_slow_workers_under_the_authors_protocol():
    trials = load_grid("heterogeneous").trials()
    assert {t["algorithm"] for t in trials} == set(BUILTIN_ALGORITHMS) - RECENT
    assert {
        (t["schedule"], t["schedule_options"]["slow_fraction"], t["schedule_options"]["slow_factor"]) for t in trials
    } == {("gamma", 0.25, 2.0)}
    assert {(t["weight_decay_at"], t["warmup_start"], t["warmup_epochs"]) for t in trials} == {("master", "lr/N", 5)}


def test_recent_grid_sets_the_local_steps_rules_apart_under_the_authors_protocol():
    """recent.yaml: the rules of 2022-2025 against DANA, DANA-DC and gap-aware (and the baseline) at N = 8, 16,
    32 with gamma workers; per: gives the local-steps rules their jobs of H = 8 and the baseline's effective
    step, and nothing to the others."""
    grid = load_grid("recent", data_dir="/unused")
    trials = grid.trials()
    assert {t["algorithm"] for t in trials} == RECENT | {"baseline", "dana", "dana-dc", "gap-aware"}
    assert {t["num_workers"] for t in trials} == {1, 8, 16, 32} and {t["schedule"] for t in trials} == {"gamma"}
    for t in trials:
        local = t["algorithm"] in ("diloco", "async-diloco")
        assert (t["lr"], t.get("algorithm_options")) == ((0.015, {"local_steps": 8}) if local else (0.1, None))
        assert (t["model"], t["dataset"], t["weight_decay_at"], t["warmup_start"]) == (
            "resnet20",
            "cifar10",
            "master",
            "lr/N",
        )


def test_per_sets_a_schedule_and_a_rule_apart_and_survives_only_and_tune(tmp_path):
    path = tmp_path / "per.yaml"
    path.write_text(
        "trial: {epochs: 1}\n"
        "grid: {algorithm: [dana, diloco], num_workers: [4], schedule: [round-robin, gamma], seed: [0]}\n"
        "per:\n  schedule: {gamma: {schedule_options: {slow_fraction: 0.25, slow_factor: 2.0}}}\n"
        "  algorithm: {diloco: {lr: 0.01, algorithm_options: {local_steps: 2}}}\n"
    )
    grid = load_grid(str(path))
    got = {
        (t["algorithm"], t["schedule"]): (t.get("lr"), t.get("schedule_options"), t.get("algorithm_options"))
        for t in grid.trials()
    }
    slow = {"slow_fraction": 0.25, "slow_factor": 2.0}
    assert got == {
        ("dana", "round-robin"): (None, None, None),
        ("dana", "gamma"): (None, slow, None),
        ("diloco", "round-robin"): (0.01, None, {"local_steps": 2}),
        ("diloco", "gamma"): (0.01, slow, {"local_steps": 2}),
    }
    tune_config = {
        "cell": cell_label("diloco", 4),
        "schedule": "gamma",
        "seed": 0,
        "_fixed": grid.trial,
        "_per": grid.per,
    }
    assert trial_from_tune(tune_config) == next(
        t for t in grid.trials() if (t["algorithm"], t["schedule"]) == ("diloco", "gamma")
    )
    assert len(load_grid(str(path), only={"algorithm": ["dana"]}).trials()) == 2  # per.diloco unused, still valid
    both = tmp_path / "both.yaml"  # a rule's setting of a key its schedule also sets wins
    both.write_text(path.read_text().replace("gamma: {schedule_options:", "gamma: {lr: 0.02, schedule_options:"))
    lrs = {(t["algorithm"], t["schedule"]): t.get("lr") for t in load_grid(str(both)).trials()}
    assert lrs == {
        ("dana", "round-robin"): None,
        ("dana", "gamma"): 0.02,
        ("diloco", "round-robin"): 0.01,
        ("diloco", "gamma"): 0.01,
    }
    stored = tmp_path / "stored.yaml"
    grid.to_file(str(stored))
    assert load_grid(str(stored)).per == grid.per and load_grid(str(stored)).changes_from(grid) is None


def test_num_actors_is_a_cap(tmp_path):
    grid = load_grid("table3", data_dir=str(tmp_path))
    actors = {(t["algorithm"], t["num_workers"]): t["ray"]["num_actors"] for t in grid.trials()}
    assert actors[("dana", 4)] == 4 and actors[("dana", 32)] == 32 and actors[("baseline", 1)] == 1


@pytest.mark.parametrize("table", [3, 4, 5, 6, 7, 8])
def test_every_paper_cell_is_in_its_grid(table, tmp_path):
    grid = load_grid(f"table{table}", data_dir=str(tmp_path))
    paper = paper_tables()
    paper = paper[paper["table"] == table]
    ours = {(paper_rows()[a], n) for a, n in grid.cells() if a in paper_rows()}
    assert set(zip(paper["algorithm"], paper["workers"])) <= ours
    trial = grid.trials()[0]
    assert {PAPER_MODEL[trial["model"]]} == set(paper["model"]) and {trial["dataset"]} == set(paper["dataset"])
    assert set(grid.axes["schedule"]) == set(paper["schedule"])
    assert grid.paper_table == table and grid.seeds == [0, 1, 2]


def test_table2_is_imagenet_resnet50(tmp_path):
    trial = load_grid("table2", data_dir=str(tmp_path)).trials()[0]
    assert (trial["model"], trial["dataset"], trial["epochs"]) == ("resnet50", "imagenet", 90)


def test_smoke_test_is_one_epoch_one_seed():
    grid = load_grid("quickstart", smoke_test=True)
    assert {t["epochs"] for t in grid.trials()} == {1} and len(grid.trials()) == len(grid.cells())  # one seed a cell


def test_tune_config_round_trip():
    assert parse_cell(cell_label("nag-asgd", 16)) == ("nag-asgd", 16)
    fixed = {"model": "cnn", "ray": {"num_actors": 4}}
    assert trial_from_tune({"cell": "dana N=16", "schedule": "gamma", "seed": 2, "_fixed": fixed}) == dict(
        model="cnn", algorithm="dana", num_workers=16, schedule="gamma", seed=2, ray={"num_actors": 4}
    )


BAD = {
    "unknown key": (
        "trial: {}\ngrid: {}\nextra: 1\n",
        r"grid file: unknown option 'extra' for 'bad.yaml'; allowed: description",
    ),
    "option outside its section": (
        "trial: {num_actors: 2}\ngrid: {}\n",
        r"num_actors: is an option of section 'ray'; write it there: ray: \{num_actors: ...\}",
    ),
    "axis in trial": ("trial: {seed: 1}\ngrid: {}\n", r"trial.seed: is a grid axis; put it under grid"),
    "missing axis": (
        "trial: {}\ngrid: {algorithm: [dana], schedule: [round-robin]}\n",
        r"grid.num_workers: expected a non-empty list \(a grid names its rules and worker counts\), got None",
    ),
    "empty axis": (
        "trial: {}\ngrid: {algorithm: [dana], num_workers: [2], seed: []}\n",
        r"grid.seed: expected a non-empty list, got \[\]",
    ),
    "unknown axis": ("trial: {}\ngrid: {lr: [0.1]}\n", r"grid: unknown option 'lr' for 'bad.yaml'; allowed: algorithm"),
    "unknown algorithm": (
        "trial: {}\ngrid: {algorithm: [adam], num_workers: [2], schedule: [round-robin], seed: [0]}\n",
        r"grid.algorithm: unknown name 'adam'; allowed: baseline, ssgd",
    ),
    "bad trial key": (
        "trial: {optimizer: sgd}\ngrid: {algorithm: [dana], num_workers: [2], schedule: [round-robin], seed: [0]}\n",
        r"config: unknown key 'optimizer'",
    ),
    "not yaml": ("trial: [\n", r"not valid YAML"),
    "per of an axis without settings": (
        "trial: {}\ngrid: {algorithm: [dana], num_workers: [2], schedule: [round-robin], "
        "seed: [0]}\nper: {seed: {0: {lr: 0.1}}}\n",
        r"per: unknown option 'seed' for 'bad.yaml'; allowed: schedule, algorithm",
    ),
    "per of an unknown rule": (
        "trial: {}\ngrid: {algorithm: [dana], num_workers: [2], schedule: [round-robin], "
        "seed: [0]}\nper: {algorithm: {dnaa: {lr: 0.1}}}\n",
        r"per.algorithm: unknown name 'dnaa'; allowed: baseline",
    ),
    "per of where it runs": (
        "trial: {}\ngrid: {algorithm: [dana], num_workers: [2], schedule: [round-robin], "
        "seed: [0]}\nper: {algorithm: {dana: {num_actors: 1}}}\n",
        r"per.algorithm.dana: unknown option 'num_actors' for 'bad.yaml'; allowed: algorithm_options",
    ),
    "per option the rule lacks": (
        "trial: {}\ngrid: {algorithm: [dana], num_workers: [2], schedule: [round-robin], "
        "seed: [0]}\nper: {algorithm: {dana: {algorithm_options: {local_steps: 2}}}}\n",
        r"algorithm_options: unknown option 'local_steps' for 'dana'; allowed: none",
    ),
    "duplicate seed": (
        "trial: {}\ngrid: {algorithm: [dana], num_workers: [2], schedule: [round-robin], seed: [0, 0]}\n",
        r"grid.seed: 0 is listed twice; every value once",
    ),
    "workers as words": (
        "trial: {}\ngrid: {algorithm: [dana], num_workers: [eight], schedule: [round-robin], seed: [0]}\n",
        r"grid.num_workers: expected an integer in \[1, 65536\], got 'eight'",
    ),
    "decay epochs not a list": (
        "trial: {lr_decay_epochs: 80}\ngrid: {algorithm: [dana], num_workers: [2], "
        "schedule: [round-robin], seed: [0]}\n",
        r"lr_decay_epochs: expected a list of epochs > 0, got 80",
    ),
    "impossible gamma": (
        "trial: {schedule_options: {shape: -1}}\ngrid: {algorithm: [dana], num_workers: [2], "
        "schedule: [gamma], seed: [0]}\n",
        r"schedule_options.shape: expected a finite number > 0.0, got -1",
    ),
    "impossible wrn": (
        "trial: {model: wrn, model_options: {depth: 15}}\ngrid: {algorithm: [dana], num_workers: [2], "
        "schedule: [round-robin], seed: [0]}\n",
        r"model_options.depth: expected an integer 6n\+4 >= 10",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_grid_exits_2_naming_file_and_field(case, tmp_path, capsys):
    text, match = BAD[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(GridError, match=match):
        load_grid(str(path))
    assert main([str(path), "--storage", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()  # nothing launched


def test_a_file_too_large_to_be_a_grid_is_refused_before_it_is_parsed(tmp_path, capsys):
    """50 MB of YAML took 26 s to parse before it was refused; its size is checked first."""
    import time

    from dana_ray.experiments.grid import MAX_GRID_BYTES

    path = tmp_path / "huge.yaml"
    with open(path, "w") as f:
        f.write("trial: {}\ngrid: {}\nnotes:\n")
        line = "  - " + "x" * 95 + "\n"
        f.write(line * (50 * 1024 * 1024 // len(line)))
    started = time.perf_counter()
    assert main([str(path), "--storage", str(tmp_path / "results")]) == 2
    assert time.perf_counter() - started < 5
    size = path.stat().st_size
    assert capsys.readouterr().err == (
        f"error: {path}: {size} bytes; a grid file has at most {MAX_GRID_BYTES} (is it a grid file?)\n"
    )


def test_unknown_grid_name_lists_the_known_ones():
    with pytest.raises(
        GridError, match=r"table99: no such grid file; known names: heterogeneous, quickstart, recent, speedup, table2"
    ):
        load_grid("table99")


def test_the_grids_ship_inside_the_package():
    """The quickstart and every paper table's grid are package data, found by name from any folder."""
    assert PACKAGED_GRIDS.startswith(os.path.dirname(dana_ray.__file__))
    assert {"quickstart", "speedup", "table2", "table3", "table4", "table5", "table6", "table7", "table8"} <= set(
        grid_names()
    )
    here = os.path.realpath(PACKAGED_GRIDS)
    assert all(os.path.realpath(resolve(name)) == os.path.join(here, f"{name}.yaml") for name in grid_names())
