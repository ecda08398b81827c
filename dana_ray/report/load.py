"""An experiment folder as a frame of trials: one row per trial the grid asked for, read from the files a sweep
writes (``experiments/folder.py``); no Ray cluster needed. Trials that never ran, and trial folders whose files
cannot be read, are rows too, flagged, so that nothing is silently left out."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import pandas as pd

from dana_ray.config import TrialConfig
from dana_ray.core.cli import one_line
from dana_ray.experiments.folder import GRID_FILE, RESULT_FILE, parse_trial_folder, read_results
from dana_ray.experiments.grid import AXES, GridError, load_grid, trial_from_tune
from dana_ray.report.tables import add_histograms

DEFAULTS = TrialConfig()  # what a trial config that omits a key means


def load_experiment(path: str) -> pd.DataFrame:
    """One row per trial: its axes, final metrics and per-epoch test errors (``curve``). Where the experiment
    folder holds the grid the sweep ran (``grid.yaml``), every trial it asked for has a row: one that never
    ran or never reported is an unfinished row, so its cell is flagged ``incomplete`` (and a cell none of
    whose trials ran is listed with n = 0). A trial folder whose files cannot be read (an empty or cut
    ``params.json`` after a full disk, an unreadable ``result.json``) is a row with ``broken`` set to the
    reason, its cell taken from the folder's name; ``attrs["broken"]`` lists every such folder, with its
    reason, whether or not its cell could be told. Raises ValueError only when nothing can be read."""
    if not os.path.isdir(path):
        raise ValueError(f"experiment: {path!r} is not a folder")
    rows, broken = [], []
    planned = {(c["algorithm"], c["num_workers"], c["schedule"], c["seed"]): c for c in _grid_trials(path)}
    for folder in sorted(os.listdir(path)):
        trial_dir = os.path.join(path, folder)
        if not _is_trial_folder(trial_dir, folder):
            continue
        if not any(os.path.exists(os.path.join(trial_dir, f)) for f in ("params.json", RESULT_FILE)):
            key = parse_trial_folder(folder)  # a trial Tune named but never started: pending, not broken
            if key is not None and key not in planned:
                rows.append(_row(dict(zip(AXES, key))))
            continue
        try:
            config, results = _read_trial(trial_dir)
        except _Unreadable as error:
            broken.append((trial_dir, str(error)))
            key = parse_trial_folder(folder)
            if error.config is not None:  # its params.json was read: its cell is known
                rows.append(_row(error.config, trial=folder, broken=str(error)))
            elif key is not None:
                config = dict(planned.get(key, {}), **dict(zip(AXES, key)))
                rows.append(_row(config, trial=folder, broken=str(error)))
            continue
        last = results[-1] if results else {}
        rows.append(
            _row(
                config,
                trial=folder,
                epochs_done=last.get("epoch", 0),
                test_error=last.get("test_error", math.nan),
                diverged=bool(last.get("diverged", False)),
                finished=is_finished(last, config.get("epochs", DEFAULTS.epochs)),
                mean_delay=last.get("mean_delay", math.nan),
                params_sha256=last.get("params_sha256", ""),
                **epoch_series(results),
                delay_histogram=add_histograms(r.get("delay_histogram") or [] for r in results),
            )
        )
    found = {(r["algorithm"], r["num_workers"], r["schedule"], r["seed"]) for r in rows}
    for key, config in planned.items():
        if key not in found:
            found.add(key)
            rows.append(_row(config))
    if not rows:
        detail = f"; unreadable: {broken[0][0]} ({broken[0][1]})" if broken else ""
        raise ValueError(f"experiment: no trials under {path!r} (expected Tune trial folders with params.json){detail}")
    trials = pd.DataFrame(rows)
    trials.attrs["broken"] = broken
    return trials


def epoch_series(rows: list[dict]) -> dict[str, Any]:
    """A trial's per-epoch test errors (``curve``) and times on both clocks, from its epoch rows (nan where a
    row lacks one: results from before the clock)."""
    return {
        "curve": [r.get("test_error", math.nan) for r in rows],
        "sim_times": [r.get("sim_time", math.nan) for r in rows],
        "wall_times": [r.get("wall_time", math.nan) for r in rows],
    }


def is_finished(last: dict, epochs: int) -> bool:
    """Whether a trial whose last report is ``last`` finished: it reported its last epoch, or diverged."""
    return bool(last.get("diverged", False)) or last.get("epoch", 0) >= epochs


class _Unreadable(Exception):
    """A trial folder's file that cannot be read; the message names the file and why; ``config``: the trial's
    config where its params.json could be read."""

    def __init__(self, message: str, config: dict | None = None) -> None:
        super().__init__(message)
        self.config = config


def _is_trial_folder(trial_dir: str, name: str) -> bool:
    return os.path.isdir(trial_dir) and (
        os.path.exists(os.path.join(trial_dir, "params.json"))
        or os.path.exists(os.path.join(trial_dir, "result.json"))
        or parse_trial_folder(name) is not None
    )


def _read_trial(trial_dir: str) -> tuple[dict, list[dict]]:
    """A trial's config and its reported epochs; raises ``_Unreadable`` naming the file."""
    params_file = os.path.join(trial_dir, "params.json")
    try:
        with open(params_file) as f:
            params = json.load(f)
        config = trial_from_tune(params) if "cell" in params else params
        missing = [axis for axis in AXES if axis not in config]  # every row needs its axes
        if missing:
            raise ValueError(f"no {missing[0]}")
    except FileNotFoundError:
        raise _Unreadable(f"{params_file}: missing") from None
    except (OSError, ValueError, TypeError, KeyError) as error:  # JSONDecodeError and UnicodeDecodeError too
        reason = "empty" if os.path.isfile(params_file) and os.path.getsize(params_file) == 0 else one_line(error)
        raise _Unreadable(f"{params_file}: {reason}") from None
    results_file = os.path.join(trial_dir, RESULT_FILE)
    try:
        return config, read_results(results_file)
    except (OSError, ValueError) as error:
        raise _Unreadable(f"{results_file}: {one_line(error)}", config) from None


def _row(config: dict, trial: str | None = None, broken: str = "", **reported) -> dict:
    """A trial's row: its config's axes, then what it reported (``reported``; none for a trial that never
    ran or whose files cannot be read)."""
    row = {
        "trial": trial,
        "model": config.get("model", DEFAULTS.model),
        "dataset": config.get("dataset", DEFAULTS.dataset),
        "schedule": config["schedule"],
        "num_workers": config["num_workers"],
        "algorithm": config["algorithm"],
        "seed": config["seed"],
        "epochs_planned": config.get("epochs", DEFAULTS.epochs),
        "epochs_done": 0,
        "test_error": math.nan,
        "diverged": False,
        "finished": False,
        "mean_delay": math.nan,
        "params_sha256": "",
        "curve": [],
        "sim_times": [],
        "wall_times": [],
        "delay_histogram": [],
    }
    return dict(row, **reported, broken=broken)


def results_frame(results: list[dict]) -> pd.DataFrame:
    """Finished runs (``trial.run``'s results) as a trials frame, for ``summarize``: the command line's
    mean/std table is the report's."""
    return pd.DataFrame(
        [
            _row(
                r["config"],
                epochs_done=r["epochs"],
                test_error=r["test_error"],
                diverged=r["diverged"],
                finished=True,
                mean_delay=r["mean_delay"],
                params_sha256=r["params_sha256"],
                **epoch_series(r["history"]),
            )
            for r in results
        ]
    )


def _grid_trials(path: str) -> list[dict]:
    """The trial configs of the grid stored in the experiment folder ([] without one, or if it cannot be
    read here, e.g. a plug-in this machine lacks: then only the trials found are reported)."""
    stored = os.path.join(path, GRID_FILE)
    if not os.path.isfile(stored):
        return []
    try:
        return load_grid(stored).trials()
    except (GridError, ValueError):
        return []
