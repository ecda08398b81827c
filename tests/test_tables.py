"""Every grid of tune_configs/ runs end to end (sweep -> report) at its real model, batch and settings, on
tiny data in the real on-disk formats: the first seed, each rule at the grid's smallest N, one gradient per
trial (``--set max_steps_per_epoch=1``), on the CPU (``--set gpus_per_actor=0``), trial-parallel
(``--executor local``: a trial computes only the gradients it applies). Table 2's ResNet-50 sees 32-px
crops instead of 224 (one 224-px batch of 256 takes about 2 minutes on the 2-core CI machine); its batch,
model and everything else are the grid's. A mistake in a grid is found here, not on a paid GPU cluster."""

from __future__ import annotations

import os

import pytest

from dana_ray.config import get_option
from dana_ray.experiments.grid import PACKAGED_GRIDS, load_grid
from dana_ray.report import load_experiment, render
from dana_ray.sweep import main

pytestmark = pytest.mark.usefixtures("ray_session")

GRIDS = sorted(
    f[:-5]
    for f in os.listdir(PACKAGED_GRIDS)
    if f.endswith(".yaml") and f not in ("quickstart.yaml", "heterogeneous.yaml")
)  # those two are the embedded digits: run elsewhere (speedup.yaml, on the digits too, is run here)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from fakedata import make_fake_cifar, make_fake_imagefolder

    root = tmp_path_factory.mktemp("data")
    make_fake_cifar(str(root / "cifar"), "cifar10", n_train=130, n_test=20)
    make_fake_cifar(str(root / "cifar"), "cifar100", n_train=130, n_test=20)
    make_fake_imagefolder(str(root / "imagenet"), classes=2, per_class=130, size=24, val_per_class=3)
    return {"cifar10": str(root / "cifar"), "cifar100": str(root / "cifar"), "imagenet": str(root / "imagenet")}


#: Run by `python -m pytest -m slow` only: grids whose model, data and schedule other grids here already run
#: (table6 = table5's WRN on CIFAR-100, which tests/test_data.py loads; table7 = table5 with table4's block
#: random and SSGD; table8 = table7 on CIFAR-100), and table2 (ResNet-50 on ImageNet folders: 40 s on the CPU;
#: the default run builds ResNet-50 in tests/test_models.py and reads image folders in tests/test_data.py and
#: the GPU check's folder pipeline), and recent (table3's ResNet-20 on CIFAR-10 with the later rules, which the
#: default run's speedup grid and the rule tests cover).
SLOW = ("recent", "table2", "table6", "table7", "table8")


@pytest.mark.parametrize("name", [pytest.param(g, marks=pytest.mark.slow) if g in SLOW else g for g in GRIDS])
def test_a_table_grid_runs_end_to_end(name, data, tmp_path, capsys):
    grid = load_grid(name, data_dir="/unused")
    smallest = min(grid.axes["num_workers"])
    args = [
        name,
        "--smoke-test",
        "--only",
        f"num_workers={smallest}",
        "--set",
        "max_steps_per_epoch=1",
        "--set",
        "gpus_per_actor=0",
        "--set",
        "cpus_per_actor=2",
        "--executor",
        "local",
        "--storage",
        str(tmp_path),
        "--name",
        name,
        "--no-report",
    ]
    if grid.trial["dataset"] in data:  # the embedded digits (speedup.yaml) need none
        args += ["--data-dir", data[grid.trial["dataset"]]]
    if grid.trial["dataset"] == "imagenet":
        args += ["--set", "dataset_options={image_size: 32}"]
    assert main(args) == 0, capsys.readouterr().err
    trials = load_experiment(str(tmp_path / name))
    assert trials["finished"].all() and not trials["diverged"].any()
    assert set(trials["algorithm"]) == set(grid.axes["algorithm"])
    ran = load_grid(str(tmp_path / name / "grid.yaml"))  # what ran: the grid's model, batch and settings
    for key in (
        "model",
        "dataset",
        "batch_size",
        "lr",
        "momentum",
        "weight_decay",
        "weight_decay_at",
        "warmup_epochs",
        "lr_decay_epochs",
    ):
        assert ran.trial.get(key) == grid.trial.get(key), key
    assert get_option(ran.trial, "fused_updates") == get_option(grid.trial, "fused_updates")
    assert ran.per == grid.per
    assert "###" in render(trials)
