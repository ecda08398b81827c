"""An install that works outside the clone: the wheel that ``pip install .`` builds, in a fresh virtual
environment, runs the quickstart's smoke sweep and the report from an empty folder.

The environment reuses this one's packages (``--system-site-packages``: torch and Ray are large, and the wheel
is what is tested, not them); the wheel's ``dana_ray`` must be the one imported there, not this clone's (an
editable install's import hook could shadow it), and nothing may be read from the clone.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import venv

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.ray  # the sweep starts a Ray instance of its own


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh virtual environment with the wheel installed, an empty folder to run in)."""
    root = tmp_path_factory.mktemp("install")
    wheels = root / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), REPO],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = glob.glob(str(wheels / "dana_ray-*.whl"))
    env_dir = root / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=True)
    python = str(env_dir / "bin" / "python")
    done = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "-q", wheel], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    empty = root / "work"
    empty.mkdir()
    return python, empty


def _run(python: str, cwd, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_ADDRESS="local", PYTHONPATH="")  # a Ray of its own; nothing from the clone
    return subprocess.run([python, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_wheel_holds_the_grids_and_is_what_is_imported(installed):
    python, empty = installed
    where = _run(
        python,
        empty,
        "-c",
        "import dana_ray, os; print(dana_ray.__file__); "
        "from dana_ray.experiments.grid import grid_names; print(grid_names())",
    )
    assert where.returncode == 0, where.stderr
    path, names = where.stdout.splitlines()
    assert path.startswith(os.path.dirname(os.path.dirname(python))) and not path.startswith(REPO), path
    assert {"quickstart", "table3", "table8"} <= set(eval(names))


def test_the_smoke_sweep_and_the_report_run_from_an_empty_folder(installed):
    python, empty = installed
    storage = empty / "results"
    sweep = _run(python, empty, "-m", "dana_ray.sweep", "--smoke-test", "--storage", str(storage), "--name", "smoke")
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    assert "report written into" in sweep.stdout
    report = _run(
        python,
        empty,
        "-m",
        "dana_ray.report",
        str(storage / "smoke"),
        "--format",
        "csv",
        "--out",
        str(empty / "report"),
    )
    assert report.returncode == 0, report.stderr
    assert report.stdout.startswith("model,dataset,schedule,num_workers,algorithm,mean,std,n,diverged,flags")
    assert sorted(os.listdir(empty)) == ["report", "results"]  # nothing else written where it ran
