"""Experiment grids: the YAML files in ``tune_configs/``, checked and expanded into trial configs.

A grid file::

    description: ResNet-20 on CIFAR-10, round robin (the paper's Table 3)
    paper_table: 3                 # optional: the report puts the paper's numbers beside ours
    trial:                         # fixed TrialConfig keys shared by every trial
      model: resnet20
      dataset: cifar10
      data_dir: ~/data/cifar       # --data-dir overrides it
      epochs: 160
      ...
      compute: {gpus_per_actor: 0.25}  # how it runs: sections (a section option at the top level is
      ray: {num_actors: 32}            # moved into its section; ``--set num_actors=8`` likewise)
    grid:                          # the axes; their product is the list of trials
      algorithm: [...]             # names in dana_ray.algorithms.ALGORITHMS
      num_workers: [4, 8, 16, 32]
      schedule: [round-robin]
      seed: [0, 1, 2]              # an explicit list, so every cell gets the same seeds
    per:                           # optional: settings for some values of an axis, over trial's
      algorithm:
        my-rule: {lr: 0.015, algorithm_options: {steps: 8}}
      schedule:
        gamma: {schedule_options: {slow_fraction: 0.25, slow_factor: 2.0}}
    tune:                          # optional
      max_concurrent_trials: 4     # default: as many as the cluster holds
      max_failures: 2              # a failed trial resumes from its last epoch's checkpoint this often
      trial_cpus: 0.25             # CPUs for the Tune trial process itself (it only waits on the server)

A single-worker rule (one whose ``max_workers`` is 1, the baseline) runs once per schedule and seed with
``num_workers: 1``, whatever the ``num_workers`` axis says. A trial of N workers gets min(N, num_actors)
actors: ``ray.num_actors`` is a cap (unset: one actor per logical worker). ``trial.plugins`` names modules
(or .py files, relative to the working directory) that register rules, data sets and models; they are
imported before the grid is checked.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from dana_ray.algorithms import is_single_worker
from dana_ray.config import (
    AXIS_CHECKS,
    EXECUTORS,
    SECTIONS,
    TrialConfig,
    check_nested,
    check_supports,
    get_option,
    given_options,
    section_of,
    set_options,
)
from dana_ray.core.checks import check_integer, check_name, check_number, check_options, is_integer
from dana_ray.core.cli import one_line
from dana_ray.core.plugins import load_plugins, normalize
from dana_ray.experiments.folder import parse_cell

AXES = ("algorithm", "num_workers", "schedule", "seed")
#: The axes a grid may leave out, and what they then are: one trial's defaults (round robin, seed 0).
AXIS_DEFAULTS: dict[str, list[Any]] = {"schedule": ["round-robin"], "seed": [0]}
#: The top-level keys of a grid file.
GRID_KEYS = ("description", "paper_table", "trial", "grid", "per", "tune")
#: The axes whose values may carry settings of their own (``per:``), applied in this order over ``trial:``.
PER_AXES = ("schedule", "algorithm")
#: What ``per:`` may set: how a trial is trained, not where it runs (its reservations are sized per grid).
PER_KEYS = (
    "algorithm_options",
    "schedule_options",
    "lr",
    "lr_decay_epochs",
    "lr_decay_factor",
    "warmup_epochs",
    "warmup_start",
    "momentum",
    "weight_decay",
    "weight_decay_at",
    "batch_size",
)
TUNE_OPTIONS = ("max_concurrent_trials", "max_failures", "trial_cpus", "checkpoint_every", "executor")


def check_executor(executor: Any, schedules: list[str], server_shards: int = 1, field: str = "tune.executor") -> None:
    """``executor`` is a registered executor that can follow every schedule of the grid and split θ over
    the trials' ``server_shards``."""
    check_name(field, executor, EXECUTORS)
    check_supports(executor, schedules, server_shards, field=field, shards_field=field)


#: A grid's ``tune:`` settings when it does not say (see ``load_grid`` for their checks).
TUNE_DEFAULTS: dict[str, Any] = {"max_failures": 2, "checkpoint_every": "auto", "executor": "ray", "trial_cpus": 0.25}
#: What a resumed experiment may change (``--resume`` with ``--set``, ``--data-dir`` or an edited grid file): where
#: the data lives, where and how its trials run (what ``cluster.resources.size_to_cluster`` sizes; the server shards
#: and where they go: a checkpoint restores with any number of shards) and settings that change no number. By
#: name: ``data_dir`` is a field, the others are section options.
RESUMABLE = (
    "data_dir",
    "num_actors",
    "server_cpus",
    "cpus_per_actor",
    "server_shards",
    "server_resources",
    "jobs_per_call",
    "prefetch_batches",
    "max_actor_restarts",
    "actor_start_timeout_s",
)
#: The largest grid file read (the paper's tables are 1-2 kB each).
MAX_GRID_BYTES = 1 << 20
#: The grids that ship with dana_ray, inside the package (a clone's ``tune_configs/`` is a link to them).
PACKAGED_GRIDS = str(resources.files("dana_ray.experiments").joinpath("grids"))


class GridError(ValueError):
    """A bad grid file; the message names the file and the field."""


@dataclass
class Grid:
    name: str
    path: str
    description: str
    paper_table: int | None
    trial: dict[str, Any]
    axes: dict[str, list]
    tune: dict[str, Any] = field(default_factory=dict)
    #: axis -> value -> trial keys for that value (``per:``)
    per: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: every trial's config, checked (``load_grid`` checks each once; the sweep uses these)
    checked: list[TrialConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tune = {**TUNE_DEFAULTS, **self.tune}

    @property
    def seeds(self) -> list[int]:
        return list(self.axes["seed"])

    def cells(self) -> list[tuple[str, int]]:
        """(algorithm, num_workers) pairs in grid order; a single-worker rule only once, with one worker."""
        out: list[tuple[str, int]] = []
        for algorithm, workers in itertools.product(self.axes["algorithm"], self.axes["num_workers"]):
            cell = (algorithm, 1 if is_single_worker(algorithm) else workers)
            if cell not in out:
                out.append(cell)
        return out

    def trials(self) -> list[dict[str, Any]]:
        """Every trial's full config: cells x schedules x seeds."""
        return [
            trial_config(self.trial, algorithm, workers, schedule, seed, self.per)
            for algorithm, workers in self.cells()
            for schedule in self.axes["schedule"]
            for seed in self.axes["seed"]
        ]

    def to_file(self, path: str) -> None:
        """Write this grid as a grid file (every key resolved: data_dir and plugins absolute): a sweep writes
        it into its experiment folder, where ``--resume`` and the report read what was asked for."""
        raw = {
            "description": self.description,
            "paper_table": self.paper_table,
            "trial": dict(self.trial),
            "grid": {axis: list(self.axes[axis]) for axis in AXES},
            "per": self.per or None,
            "tune": dict(self.tune),
        }
        partial = f"{path}.partial"
        with open(partial, "w") as f:
            yaml.safe_dump({k: v for k, v in raw.items() if v is not None}, f, sort_keys=False)
        os.replace(partial, path)  # whole or not at all: an interrupt never leaves half a grid file

    def changes_from(self, other: Grid) -> str | None:
        """The first difference in what is trained between two grids (``grid.seed: [0, 1] -> [0, 1, 2]``), or
        None; what a resumed experiment may change (``RESUMABLE``) may differ."""
        for axis in AXES:
            if list(self.axes[axis]) != list(other.axes[axis]):
                return f"grid.{axis}: {list(other.axes[axis])} -> {list(self.axes[axis])}"
        mine, theirs = _flat(self.trial), _flat(other.trial)
        for key in sorted(set(mine) | set(theirs)):
            if key.rsplit(".", 1)[-1] not in RESUMABLE and mine.get(key) != theirs.get(key):
                return f"trial.{key}: {theirs.get(key)!r} -> {mine.get(key)!r}"
        if self.per != other.per:
            return f"per: {other.per!r} -> {self.per!r}"
        return None

    def resumable_values(self) -> dict[str, Any]:
        """Its settings among ``RESUMABLE``, by name (None where unset)."""
        given = given_options(self.trial)
        return {key: self.trial.get(key) if key == "data_dir" else given.get(key) for key in RESUMABLE}

    def with_resumable(self, values: dict[str, Any]) -> Grid:
        """A copy with these ``RESUMABLE`` settings (by name) set in its trial section."""
        trial = {k: dict(v) if isinstance(v, dict) else v for k, v in self.trial.items()}
        if "data_dir" in values:
            trial["data_dir"] = _resolved_data_dir(values["data_dir"])
        set_options(trial, {k: v for k, v in values.items() if k != "data_dir"})
        return dataclasses.replace(self, trial=trial)

    def smoke_test(self) -> Grid:
        """One epoch, the first seed: a quick check that every cell starts, trains and reports."""
        return Grid(
            self.name,
            self.path,
            self.description,
            self.paper_table,
            dict(self.trial, epochs=1),
            dict(self.axes, seed=self.axes["seed"][:1]),
            self.tune,
            self.per,
        )


def _flat(trial: dict[str, Any]) -> dict[str, Any]:
    """A grid's ``trial:`` with its sections' options as ``section.option`` keys."""
    flat = {k: v for k, v in trial.items() if k not in SECTIONS}
    flat.update({f"{section_of(k)}.{k}": v for k, v in given_options(trial).items()})
    return flat


def trial_config(
    fixed: dict[str, Any],
    algorithm: str,
    num_workers: int,
    schedule: str,
    seed: int,
    per: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """One trial's config: the fixed keys, the settings of its schedule and its rule (``per``), the axes,
    and min(N, the num_actors cap) actors."""
    per = per or {}
    config = dict(fixed)
    config.update(per.get("schedule", {}).get(schedule, {}))
    config.update(per.get("algorithm", {}).get(algorithm, {}))  # a rule's settings over its schedule's
    config.update(algorithm=algorithm, num_workers=num_workers, schedule=schedule, seed=seed)
    cap = get_option(config, "num_actors")
    # a cap that is not a positive integer passes through as it is, for the config's check to name it
    set_options(
        config,
        {
            "num_actors": min(num_workers, cap)
            if is_integer(cap) and cap >= 1
            else cap
            if cap is not None
            else num_workers
        },
    )
    return config


def trial_from_tune(config: dict[str, Any]) -> dict[str, Any]:
    """The trial config that a Tune trial's config stands for: its grid-searched ``cell`` ("<rule> N=16"),
    ``schedule`` and ``seed``, and the grid's fixed keys in ``_fixed`` (see ``dana_ray.sweep``)."""
    algorithm, workers = parse_cell(config["cell"])
    return trial_config(config["_fixed"], algorithm, workers, config["schedule"], config["seed"], config.get("_per"))


def grid_names() -> list[str]:
    """The names of the grids that ship with dana_ray (``quickstart``, ``table3``, ...)."""
    return sorted(f[:-5] for f in os.listdir(PACKAGED_GRIDS) if f.endswith(".yaml"))


def resolve(name_or_path: str) -> str:
    """A grid's file: a path, or a name in ./tune_configs (a grid of one's own beside the work) or among the
    grids that ship with dana_ray."""
    if os.path.isfile(name_or_path):
        return name_or_path
    for folder in (os.path.join(os.getcwd(), "tune_configs"), PACKAGED_GRIDS):
        candidate = os.path.join(folder, name_or_path if name_or_path.endswith(".yaml") else name_or_path + ".yaml")
        if os.path.isfile(candidate):
            return candidate
    raise GridError(f"{name_or_path}: no such grid file; known names: {', '.join(grid_names()) or 'none'}")


def load_grid(
    name_or_path: str,
    data_dir: str | None = None,
    smoke_test: bool = False,
    overrides: dict[str, Any] | None = None,
    only: dict[str, list] | None = None,
) -> Grid:
    """Read, check and return a grid; every trial is validated before return. ``overrides``: trial keys set
    over the file's (``--set``); ``only``: for some axes, the subset of the file's values to run (``--only``)."""
    path = resolve(name_or_path)
    size = os.path.getsize(path)
    if size > MAX_GRID_BYTES:  # before parsing: a YAML parser takes seconds a megabyte
        raise GridError(f"{path}: {size} bytes; a grid file has at most {MAX_GRID_BYTES} (is it a grid file?)")
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as error:
        raise GridError(f"{path}: not valid YAML ({one_line(error)})") from None
    try:
        if overrides or only:
            raw = _restricted(raw, overrides or {}, only or {})
        grid = _parse(path, raw, data_dir)
        if smoke_test:
            grid = grid.smoke_test()
        grid.checked = [TrialConfig.from_dict(config) for config in grid.trials()]
    except ValueError as error:
        raise GridError(f"{path}: {error}") from None
    return grid


def _restricted(raw: Any, overrides: dict[str, Any], only: dict[str, list]) -> dict:
    """The grid file's contents with ``overrides`` set in its trial section and its axes cut to ``only``."""
    if not isinstance(raw, dict) or not isinstance(raw.get("trial"), dict) or not isinstance(raw.get("grid"), dict):
        return raw  # _parse names what is wrong
    trial = {k: dict(v) if k in SECTIONS and isinstance(v, dict) else v for k, v in raw["trial"].items()}
    for key, value in overrides.items():  # a section's option by its name (num_actors) or path (ray.num_actors)
        option = key.split(".", 1)[1] if "." in key and key.split(".", 1)[0] in SECTIONS else key
        if section_of(option) is not None:
            set_options(trial, {option: value})
        else:
            trial[key] = value
    raw = dict(raw, trial=trial, grid=dict(raw["grid"]))
    for axis, values in only.items():
        check_name("--only", axis, AXES)
        listed = raw["grid"].get(axis)
        if not isinstance(listed, list) or not set(values) <= set(listed):
            raise ValueError(f"--only {axis}: {values!r} is not among the grid's {listed!r}")
        raw["grid"][axis] = [v for v in listed if v in values]
    return raw


def _resolved_data_dir(value: Any) -> Any:
    """A ``data_dir`` made absolute here ("~" is expanded on each node; a wrong type is the config's to refuse)."""
    if value and isinstance(value, str) and not value.startswith("~"):
        return os.path.abspath(value)
    return value


def _parse(path: str, raw: Any, data_dir: str | None) -> Grid:
    if not isinstance(raw, dict):
        raise ValueError("expected a mapping with the keys " + ", ".join(GRID_KEYS))
    check_options("grid file", os.path.basename(path), raw, GRID_KEYS)
    for section in ("trial", "grid"):
        if not isinstance(raw.get(section), dict):
            raise ValueError(f"{section}: expected a mapping, got {raw.get(section)!r}")
    check_nested(raw["trial"])
    trial = {k: dict(v) if k in SECTIONS else v for k, v in raw["trial"].items()}
    bad = sorted(set(trial) & set(AXES))
    if bad:
        raise ValueError(f"trial.{bad[0]}: is a grid axis; put it under grid")
    if data_dir is not None:
        trial["data_dir"] = data_dir
    if "data_dir" in trial:
        trial["data_dir"] = _resolved_data_dir(trial["data_dir"])
    if trial.get("plugins") is not None:
        if not isinstance(trial["plugins"], list):
            raise ValueError(f"trial.plugins: expected a list of module names or .py files, got {trial['plugins']!r}")
        trial["plugins"] = [normalize(p) if isinstance(p, str) else p for p in trial["plugins"]]
        load_plugins(trial["plugins"])
    axes = raw["grid"]
    check_options("grid", os.path.basename(path), axes, AXES)
    for axis in AXES:
        if axis not in axes and axis in AXIS_DEFAULTS:
            axes[axis] = list(AXIS_DEFAULTS[axis])
        values = axes.get(axis)
        if not isinstance(values, list) or not values:
            required = "" if axis in AXIS_DEFAULTS else " (a grid names its rules and worker counts)"
            raise ValueError(f"grid.{axis}: expected a non-empty list{required}, got {values!r}")
        for value in values:
            AXIS_CHECKS[axis](f"grid.{axis}", value)
        repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
        if repeated:
            raise ValueError(f"grid.{axis}: {repeated[0]!r} is listed twice; every value once")
    per = _parse_per(raw.get("per"), os.path.basename(path))
    tune = dict(raw.get("tune") or {})
    check_options("tune", os.path.basename(path), tune, TUNE_OPTIONS)
    if tune.get("max_concurrent_trials") is not None:
        check_integer("tune.max_concurrent_trials", tune["max_concurrent_trials"], minimum=1)
    check_integer("tune.max_failures", tune.setdefault("max_failures", TUNE_DEFAULTS["max_failures"]), minimum=0)
    if tune.setdefault("checkpoint_every", TUNE_DEFAULTS["checkpoint_every"]) != "auto":
        check_integer("tune.checkpoint_every", tune["checkpoint_every"], minimum=1)
    # how a Tune trial runs: a name in EXECUTORS (its plug-ins, in the trial's, loaded by now)
    check_executor(
        tune.setdefault("executor", TUNE_DEFAULTS["executor"]), axes["schedule"], get_option(trial, "server_shards")
    )
    check_number("tune.trial_cpus", tune.setdefault("trial_cpus", TUNE_DEFAULTS["trial_cpus"]), low=0.0)
    paper_table = raw.get("paper_table")
    if paper_table is not None:
        check_integer("paper_table", paper_table, minimum=1)
    name = os.path.splitext(os.path.basename(path))[0]
    return Grid(name, path, str(raw.get("description", name)), paper_table, trial, dict(axes), tune, per)


def _parse_per(raw: Any, owner: str) -> dict[str, dict[str, dict[str, Any]]]:
    """``per:``, checked: axes among PER_AXES, values registered names (a grid cut by ``--only`` may not
    run them all), keys among PER_KEYS; each trial's config is then checked whole."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"per: expected a mapping of {' or '.join(PER_AXES)} to settings, got {raw!r}")
    check_options("per", owner, raw, PER_AXES)
    per: dict[str, dict[str, dict[str, Any]]] = {}
    for axis, by_value in raw.items():
        if not isinstance(by_value, dict):
            raise ValueError(f"per.{axis}: expected a mapping of {axis} names to settings, got {by_value!r}")
        for value, settings in by_value.items():
            AXIS_CHECKS[axis](f"per.{axis}", value)
            if not isinstance(settings, dict):
                raise ValueError(f"per.{axis}.{value}: expected a mapping of trial keys, got {settings!r}")
            check_options(f"per.{axis}.{value}", owner, settings, PER_KEYS)
        per[axis] = {value: dict(settings) for value, settings in by_value.items()}
    return per
