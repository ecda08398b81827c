"""One trial's settings: a frozen dataclass whose field names are the keys of configs, YAML grids and Tune.

A config holds *what is trained* (model, data, rule, schedule, hyperparameters: the fields) apart from *how it
runs*, in sections (``config/sections.py``): ``compute`` and each executor's (``ray``)::

    {"model": "resnet20", "lr": 0.1, ..., "compute": {"device": "cuda", "gpus_per_actor": 0.25},
     "ray": {"num_actors": 32, "server_shards": 2}}

``TrialConfig.from_dict`` imports the config's plug-ins (which may declare sections), then validates
everything that can be checked without loading data, once, in the driver (other processes take it with
``TrialConfig.received``): every name against its registry, every option value against what its owner
declares, the rule's worker count, the schedule (built), the model (built on the meta device). Its one-line
error names the field (``ray.num_actors``) and the allowed values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from dana_ray.algorithms import ALGORITHMS, DEFAULT_ALGORITHM, UpdateRule, make_algorithm
from dana_ray.config import executors as _executors  # noqa: F401  (declares the executors' sections)
from dana_ray.config.sections import SECTIONS, Section, check_nested, reserve, section_of
from dana_ray.core.checks import check_integer, check_name, check_number, did_you_mean, is_number
from dana_ray.core.plugins import load_plugins, normalize
from dana_ray.core.registry import resolve_options
from dana_ray.data import DATASETS
from dana_ray.models import MODELS, check_model
from dana_ray.schedules import ARRIVAL, SCHEDULES, WARMUP_STARTS, make_schedule

#: The most logical workers a trial may have (a bound, so that a typo is refused rather than allocated).
MAX_WORKERS = 65536
#: Where weight decay is applied: "worker" (g = ∇L(x) + λx at the point x the worker was sent) or "master"
#: (g + λθ at the master's θ when the gradient is applied, PyTorch's SGD at the master: the DANA authors'
#: simulator).
WEIGHT_DECAY_AT = ("worker", "master")


def schedule_names() -> list[str]:
    """The schedules a config may name: the seeded ones, and ``arrival`` (real completion order; Ray executor)."""
    return [*SCHEDULES, ARRIVAL]


#: The checks of the four fields a grid's axes range over, used by a config's fields and a grid's axes
#: alike (``check(field, value)``; the field named as its caller says: ``seed`` or ``grid.seed``).
AXIS_CHECKS: dict[str, Callable[[str, Any], None]] = {
    "algorithm": lambda field, value: check_name(field, value, ALGORITHMS),
    "num_workers": lambda field, value: check_integer(field, value, minimum=1, maximum=MAX_WORKERS),
    "schedule": lambda field, value: check_name(field, value, schedule_names()),
    "seed": lambda field, value: check_integer(field, value, minimum=0),
}


def _field(default: Any, help: str, factory: bool = False, item: type = str) -> Any:
    """A config field with its one-line help (``field.metadata["help"]``: the trial CLI's ``--help``, whose
    flags are generated from the fields) and, for a list, its items' type."""
    metadata = {"help": help, "item": item}
    return field(default_factory=default, metadata=metadata) if factory else field(default=default, metadata=metadata)


@dataclass(frozen=True)
class TrialConfig:
    # what is trained
    model: str = _field("cnn", "a name in dana_ray.models.MODELS")
    model_options: dict = _field(dict, 'the model\'s own options, e.g. {"channels": 8}', factory=True)
    dataset: str = _field("digits", "a name in dana_ray.data.DATASETS")
    data_dir: str | None = _field(None, "where cifar10/cifar100/imagefolder/... live (never downloaded)")
    dataset_options: dict = _field(dict, "the data set's own options", factory=True)
    plugins: tuple = _field((), "modules (or .py files) registering rules, data sets, models")
    # the rule, its workers, their order
    algorithm: str = _field(DEFAULT_ALGORITHM, "a name in dana_ray.algorithms.ALGORITHMS")
    algorithm_options: dict = _field(dict, 'the rule\'s own options, e.g. {"dc_lambda": 0.04}', factory=True)
    num_workers: int = _field(1, "N logical workers")
    schedule: str = _field("round-robin", 'a name in SCHEDULES, or "arrival" (Ray executor only)')
    schedule_options: dict = _field(
        dict, 'the schedule\'s own options, e.g. {"slow_fraction": 0.25, "slow_factor": 2}', factory=True
    )
    seed: int = _field(0, "model init, data order, augmentation, schedule")
    # hyperparameters, the single worker's: DANA's point is that they stay unchanged as N grows. The defaults
    # are tuned for the baseline on the embedded digits (about 2% test error).
    batch_size: int = _field(32, "per worker, examples per gradient")
    epochs: int = _field(20, "an epoch = len(train set) // batch_size gradients, whatever N")
    max_steps_per_epoch: int | None = _field(None, "apply at most this many gradients per epoch (quick checks)")
    lr: float = _field(0.05, "η")
    lr_decay_epochs: tuple = _field(
        (10, 15), "η is multiplied by lr_decay_factor at each of these epochs (none: constant)", item=float
    )
    lr_decay_factor: float = _field(0.1, "what η is multiplied by at each of lr_decay_epochs")
    warmup_epochs: float = _field(0.0, "linear warm-up over these first epochs (0: none)")
    warmup_start: str = _field(
        "lr/N",
        'where it starts: "lr/N" (the DANA authors\'; none when N = 1) or '
        '"lr/steps" (η·(t+1)/W, from almost zero); see schedules/lr.py',
    )
    momentum: float = _field(0.9, "γ")
    weight_decay: float = _field(5e-4, "λ (where: weight_decay_at)")
    weight_decay_at: str = _field("worker", '"worker": + λx at the worker\'s point; "master": + λθ when applied')
    # how it runs: section name -> its options, resolved (``compute``, each executor's)
    sections: dict = _field(dict, "how it runs, by section", factory=True)

    @property
    def compute(self) -> Section:
        """How any executor computes (device, threads, vmap, a replica's reservation)."""
        return self.section("compute")

    def section(self, name: str) -> Section:
        """Section ``name``'s options, resolved (a section the config does not give: its defaults)."""
        if name in self.sections:
            return self.sections[name]
        return Section({option: spec.default for option, spec in SECTIONS[name].options.items()})

    def with_options(self, **options: Any) -> TrialConfig:
        """A copy with these section options (by name) set, unchecked (the caller's values are valid)."""
        sections = {name: Section(section) for name, section in self.sections.items()}
        for option, value in options.items():
            owner = section_of(option)
            if owner is None:
                raise ValueError(f"option: {option!r} is no section's")
            sections.setdefault(owner, self.section(owner))[option] = value
        return dataclasses.replace(self, sections=sections)

    def option(self, name: str) -> Any:
        """A section option by its name alone (names are unique among sections)."""
        owner = section_of(name)
        if owner is None:
            raise ValueError(f"option: {name!r} is no section's")
        return self.section(owner)[name]

    @classmethod
    def from_dict(cls, config: dict[str, Any] | TrialConfig) -> TrialConfig:
        """The config, its plug-ins imported and every field checked (a ``TrialConfig`` is returned as it is:
        it was checked when it was made)."""
        if isinstance(config, TrialConfig):
            return config
        cfg = cls._unchecked(config)
        cfg.validate()
        return cfg

    @classmethod
    def received(cls, config: dict[str, Any] | TrialConfig) -> TrialConfig:
        """A config the driver checked already, as another process receives it (a Tune trial, the server, a
        gradient or shard actor): its plug-ins imported here, nothing checked again."""
        if isinstance(config, TrialConfig):
            load_plugins(config.plugins)
            return config
        return cls._unchecked(config)

    @classmethod
    def _unchecked(cls, config: dict[str, Any]) -> TrialConfig:
        if not isinstance(config, dict):
            raise ValueError(f"config: expected a dict, got {type(config).__name__}")
        values = dict(config)
        for name, what in (
            ("lr_decay_epochs", "a list of epochs > 0"),
            ("plugins", "a list of module names or .py files"),
        ):
            if name in values:
                if not isinstance(values[name], (list, tuple)):
                    raise ValueError(f"{name}: expected {what}, got {values[name]!r}")
                values[name] = tuple(values[name])
        if values.get("plugins"):  # first: a plug-in may declare a section
            values["plugins"] = tuple(normalize(p) if isinstance(p, str) else p for p in values["plugins"])
            load_plugins(values["plugins"])
        check_nested(values)
        allowed = [f.name for f in dataclasses.fields(cls) if f.name != "sections"] + list(SECTIONS)
        unknown = sorted(set(values) - set(allowed), key=str)
        if unknown:
            raise ValueError(
                f"config: unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}{did_you_mean(unknown[0], allowed)}"
            )
        given = {name: values.pop(name) for name in list(values) if name in SECTIONS}
        # the sections given, resolved and each option checked by its Option (a section not given is its
        # defaults: ``section``); only these travel with the config, so a process that lacks another plug-in
        # executor's section can still read it
        values["sections"] = {
            name: Section(resolve_options(name, name, given[name] or {}, SECTIONS[name].options)) for name in given
        }
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The config as it is written: the fields, then each section at the top level (``compute: {...}``)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "sections"}
        values["lr_decay_epochs"], values["plugins"] = list(self.lr_decay_epochs), list(self.plugins)
        values.update({name: dict(section) for name, section in self.sections.items()})
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in values.items()}

    def settings(self) -> dict[str, Any]:
        """Every section's options by name (an executor's ``bundles`` read them)."""
        return {option: self.section(name)[option] for name, spec in SECTIONS.items() for option in spec.options}

    @property
    def rule(self) -> type[UpdateRule]:
        """The update rule's class."""
        return ALGORITHMS[self.algorithm]

    def validate(self) -> None:
        for axis, check in AXIS_CHECKS.items():
            check(axis, getattr(self, axis))
        check_name("model", self.model, MODELS)
        check_name("dataset", self.dataset, DATASETS)
        check_name("warmup_start", self.warmup_start, WARMUP_STARTS)
        check_name("weight_decay_at", self.weight_decay_at, WEIGHT_DECAY_AT)
        for name in ("model_options", "dataset_options", "schedule_options", "algorithm_options"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name}: expected a mapping, got {getattr(self, name)!r}")
        for name in ("batch_size", "epochs"):
            check_integer(name, getattr(self, name), minimum=1)
        if self.max_steps_per_epoch is not None:
            check_integer("max_steps_per_epoch", self.max_steps_per_epoch, minimum=1)
        for name in self.sections:  # each option was checked by its Option when read: the section as a whole
            check_section = SECTIONS[name].check
            if check_section is not None:
                check_section(self)
        for name in ("lr", "lr_decay_factor", "warmup_epochs", "weight_decay"):
            check_number(name, getattr(self, name), low=0.0)
        check_number("momentum", self.momentum, low=0.0, below=1.0)
        if not all(is_number(e) and e > 0 for e in self.lr_decay_epochs):
            raise ValueError(f"lr_decay_epochs: expected a list of epochs > 0, got {list(self.lr_decay_epochs)!r}")
        # the rule checks the worker count and its options' values; a 1-element rule costs nothing
        make_algorithm(
            self.algorithm, torch.zeros(1), self.num_workers, self.lr, self.momentum, **self.algorithm_options
        )
        if self.schedule != ARRIVAL:  # built: checks its options against N (time_factors' length, ...)
            make_schedule(self.schedule, self.num_workers, self.seed, **self.schedule_options)
        elif self.schedule_options:
            raise ValueError(f"schedule_options: 'arrival' takes none, got {self.schedule_options!r}")
        _check_model_once(self.model, self.model_options)
        spec = DATASETS[self.dataset]
        resolve_options("dataset_options", self.dataset, self.dataset_options, spec.options)
        if spec.needs_data_dir and not self.data_dir:
            raise ValueError(f"data_dir: dataset {self.dataset!r} needs a data directory (none given)")
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise ValueError(f"data_dir: expected a path, got {self.data_dir!r}")
        # Whether the data is there is a question for each node that reads it (data.check_dataset, run on
        # every node by the sweep before launch); a cluster's driver may not see the workers' data.


_models_checked: set[tuple[str, str]] = set()


def _check_model_once(name: str, options: dict) -> None:
    """``models.check_model`` once per (model, options) in this process (a grid has many trials of one)."""
    key = (name, repr(sorted(options.items(), key=str)))
    if key not in _models_checked:
        check_model(name, options, num_classes=10, in_channels=3)
        _models_checked.add(key)


reserve(f.name for f in dataclasses.fields(TrialConfig))
